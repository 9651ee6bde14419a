package main

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"

	"github.com/sluicehq/sluice/api/clientip"
	"github.com/sluicehq/sluice/api/envoy"
)

// grpcService is the Envoy rate limit service on --grpc-addr. A nil
// *grpcService (no --grpc-addr) is valid and does nothing.
type grpcService struct {
	srv    *grpc.Server
	ln     net.Listener
	failed chan error
}

// listenGRPC binds --grpc-addr, so a taken port fails startup before
// anything runs; "" leaves the service off.
func listenGRPC(addr string, engine envoy.Engine, proxies clientip.Proxies) (*grpcService, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("grpc listen: %w", err)
	}
	return &grpcService{srv: envoy.NewServer(engine, proxies), ln: ln, failed: make(chan error, 1)}, nil
}

// start serves in the background; a serving error arrives on errs().
func (g *grpcService) start() {
	if g == nil {
		return
	}
	go func() {
		if err := g.srv.Serve(g.ln); err != nil {
			g.failed <- err
		}
	}()
}

// errs reports a failure to serve; nil (never ready) when the service is off.
func (g *grpcService) errs() <-chan error {
	if g == nil {
		return nil
	}
	return g.failed
}

// addr is the bound address, for the startup log.
func (g *grpcService) addr() string {
	if g == nil {
		return "off"
	}
	return g.ln.Addr().String()
}

// stop lets in-flight calls finish until ctx ends, then cuts them off.
func (g *grpcService) stop(ctx context.Context) {
	if g == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		g.srv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		g.srv.Stop()
		<-done
	}
}
