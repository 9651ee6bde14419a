// Command batchload measures how many decisions per second one node sustains
// through POST /v1/check/batch. Unlike `sluice bench`, which decodes every
// answer to check the limit held, it sends pre-encoded batches and only
// counts what comes back, so on a small machine the load generator is not
// what limits the figure. See docs/PERFORMANCE.md.
//
//	go run ./deploy/batchload -url http://127.0.0.1:8000/v1/check/batch -c 4 -d 5s
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8000/v1/check/batch", "batch endpoint")
	conns := flag.Int("c", 4, "concurrent connections")
	batch := flag.Int("b", 1000, "checks per batch (at most 1000)")
	keys := flag.Int("keys", 10000, "distinct client IPs")
	dur := flag.Duration("d", 5*time.Second, "how long to send")
	caCert := flag.String("ca-cert", "", "PEM CA bundle that signed the node's --http-cert (for an https:// url)")
	skipVerify := flag.Bool("insecure-skip-verify", false, "do not verify the node's certificate")
	flag.Parse()

	tlsConfig := &tls.Config{InsecureSkipVerify: *skipVerify}
	if *caCert != "" {
		pem, err := os.ReadFile(*caCert)
		if err != nil {
			fmt.Fprintln(os.Stderr, "batchload:", err)
			os.Exit(2)
		}
		tlsConfig.RootCAs = x509.NewCertPool()
		tlsConfig.RootCAs.AppendCertsFromPEM(pem)
	}
	bodies := encodeBatches(*batch, *keys)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conns, TLSClientConfig: tlsConfig}}
	var decisions atomic.Int64
	var failed atomic.Value
	end := time.Now().Add(*dur)
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < *conns; c++ {
		wg.Go(func() {
			for i := c; time.Now().Before(end); i++ {
				resp, err := client.Post(*url, "application/json", bytes.NewReader(bodies[i%len(bodies)]))
				if err != nil {
					failed.Store(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Store(fmt.Errorf("status %d", resp.StatusCode))
					return
				}
				decisions.Add(int64(*batch))
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		fmt.Fprintln(os.Stderr, "batchload:", err)
		os.Exit(1)
	}
	elapsed := time.Since(start)
	fmt.Printf("%d decisions in %v: %.0f decisions/s over %d connections, batches of %d\n",
		decisions.Load(), elapsed.Round(time.Millisecond), float64(decisions.Load())/elapsed.Seconds(), *conns, *batch)
}

// encodeBatches pre-encodes 16 batches that together cycle through keys IPs
// on route /api/orders (rule per-ip of testdata/rules.json).
func encodeBatches(batch, keys int) [][]byte {
	bodies := make([][]byte, 16)
	for k := range bodies {
		var b bytes.Buffer
		b.WriteString(`{"requests":[`)
		for i := 0; i < batch; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			n := (k*batch + i) % keys
			fmt.Fprintf(&b, `{"attributes":{"ip":"10.%d.%d.%d","route":"/api/orders","method":"GET"}}`, n>>16&255, n>>8&255, n&255)
		}
		b.WriteString(`]}`)
		bodies[k] = b.Bytes()
	}
	return bodies
}
