// Package envoy makes a Sluice node a drop-in rate limit service for Envoy
// and Istio (SPEC §5): it serves envoy.service.ratelimit.v3's
// RateLimitService/ShouldRateLimit over gRPC, turning each descriptor into
// one check against the node's engine.
//
// It is its own package so that the HTTP API does not pull in gRPC and the
// Envoy protos, and it depends only on the small Engine interface below,
// never on raft.
package envoy

import (
	"context"
	"errors"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/api/clientip"
	"github.com/sluicehq/sluice/fsm/rules"
)

// Engine is what the service needs from a node's decision engine.
type Engine interface {
	// DecideAll decides reqs all-or-nothing: allowed only if every request
	// is, and a denial consumes nothing from any of them. out[i] is request
	// i's own decision.
	DecideAll(ctx context.Context, reqs []check.Request, out []check.Decision) (allowed bool, err error)
	// Rule returns the installed rule with the given name.
	Rule(name string) (rules.Rule, bool)
}

// Service implements RateLimitService on an Engine.
type Service struct {
	rlsv3.UnimplementedRateLimitServiceServer
	engine  Engine
	proxies clientip.Proxies
}

// NewService returns the rate limit service for engine. Only peers in
// proxies (--trusted-proxies: the Envoys) may say who the client is; see
// clientAddressKey.
func NewService(engine Engine, proxies clientip.Proxies) *Service {
	return &Service{engine: engine, proxies: proxies}
}

// NewServer returns a gRPC server with the service registered, ready to
// Serve on --grpc-addr.
func NewServer(engine Engine, proxies clientip.Proxies, opts ...grpc.ServerOption) *grpc.Server {
	s := grpc.NewServer(opts...)
	rlsv3.RegisterRateLimitServiceServer(s, NewService(engine, proxies))
	return s
}

// ShouldRateLimit decides all of the request's descriptors together: the
// answer is OVER_LIMIT if any descriptor is, and then no descriptor's
// hits are counted. A descriptor no rule applies to is OK, as with Envoy's
// own service.
func (s *Service) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	var peerAddr string
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		peerAddr = p.Addr.String()
	}
	checks, err := checksOf(req, func(claim string) string { return s.proxies.Claimed(peerAddr, claim) })
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	decisions := make([]check.Decision, len(checks))
	allowed, err := s.engine.DecideAll(ctx, checks, decisions)
	if err != nil {
		return nil, grpcError(err)
	}
	resp := &rlsv3.RateLimitResponse{
		OverallCode:          rlsv3.RateLimitResponse_OK,
		Statuses:             make([]*rlsv3.RateLimitResponse_DescriptorStatus, len(decisions)),
		ResponseHeadersToAdd: responseHeaders(decisions, allowed),
	}
	if !allowed {
		resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
	}
	for i := range decisions {
		resp.Statuses[i] = s.descriptorStatus(&decisions[i])
	}
	return resp, nil
}

func grpcError(err error) error {
	var fe *check.FieldError
	switch {
	case errors.As(err, &fe):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, err.Error())
}
