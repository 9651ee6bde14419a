// Command httpfloor is the latency floor of the machine: a bare net/http
// server that answers POST /v1/check with a constant decision, doing no work.
// Run `sluice bench` against it and against a node at the same rates; what
// the floor already spends is the platform's (kernel, network stack, Go's
// poller), not Sluice's. See docs/PERFORMANCE.md.
//
//	go run ./deploy/httpfloor -addr 127.0.0.1:8100
//	sluice bench --target http://127.0.0.1:8100 --rate 5000 --concurrency 16 --duration 5s
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8100", "listen address")
	flag.Parse()
	answer := []byte(`{"allowed":true,"limit":0,"remaining":0,"reset_ms":0,"retry_after_ms":0,"mode":"local","results":[]}` + "\n")
	http.HandleFunc("POST /v1/check", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	})
	log.Fatal(http.ListenAndServe(*addr, nil))
}
