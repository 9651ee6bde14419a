package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/api/client"
)

// runCheck asks a node for one decision: `sluice check ip=1.2.3.4 route=/api/x`.
// Exit 0 when allowed, 2 when denied, 1 on error.
func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check", stdout, stderr)
	addr := fs.String("addr", "http://127.0.0.1:8000", "node HTTP address")
	token := fs.String("token", "", "admin token (not needed for checks; sent when set)")
	cost := fs.Int64("cost", 1, "request cost")
	var tlsFlags clientTLSFlags
	tlsFlags.register(fs)
	// Flags may come before or after the k=v pairs.
	var pairs []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return flagExit(err)
		}
		if fs.NArg() == 0 {
			break
		}
		pairs = append(pairs, fs.Arg(0))
		args = fs.Args()[1:]
	}
	req := check.Request{Cost: *cost}
	for _, p := range pairs {
		name, value, ok := strings.Cut(p, "=")
		if !ok || name == "" {
			fmt.Fprintf(stderr, "sluice check: %q is not name=value\n", p)
			return 2
		}
		req.Attributes = append(req.Attributes, check.Attr{Name: name, Value: value})
	}
	tlsOption, err := tlsFlags.option()
	if err != nil {
		fmt.Fprintf(stderr, "sluice check: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := client.New(*addr, client.WithToken(*token), tlsOption).Decide(ctx, req)
	if err != nil {
		fmt.Fprintf(stderr, "sluice check: %v\n", err)
		return 1
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(d)
	if !d.Allowed {
		return 2
	}
	return 0
}
