package main

import (
	"crypto/tls"
	"flag"
	"fmt"

	"github.com/sluicehq/sluice/api/client"
	"github.com/sluicehq/sluice/transport"
)

// clientTLSFlags are the TLS flags of every command that calls a node.
type clientTLSFlags struct {
	caCert, cert, key string
	skipVerify        bool
}

func (f *clientTLSFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.caCert, "ca-cert", "", "PEM CA bundle that signed the node's --http-cert [system roots]")
	fs.StringVar(&f.cert, "cert", "", "PEM client certificate, for a node started with --http-ca-cert")
	fs.StringVar(&f.key, "key", "", "PEM key of --cert")
	fs.BoolVar(&f.skipVerify, "insecure-skip-verify", false, "do not verify the node's certificate (testing only)")
}

// config is the TLS client configuration the flags describe.
func (f *clientTLSFlags) config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: f.skipVerify}
	if f.caCert != "" {
		roots, _, err := transport.LoadCertPool(f.caCert)
		if err != nil {
			return nil, fmt.Errorf("--ca-cert: %w", err)
		}
		cfg.RootCAs = roots
	}
	if f.cert != "" || f.key != "" {
		pair, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// option is the client option for the flags.
func (f *clientTLSFlags) option() (client.Option, error) {
	cfg, err := f.config()
	if err != nil {
		return nil, err
	}
	return client.WithTLSConfig(cfg), nil
}
