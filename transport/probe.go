package transport

import (
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Probe asks the raft server id at addr, on behalf of server self, for a
// pre-vote through trans — the
// dial and handshake replication itself uses — and returns nil once it
// answers, whatever its answer: a pre-vote changes nothing on the
// receiver, granted or not.
// The leader probes a joining node before changing the configuration: an
// address that is down, is not a Sluice raft port, or does not hold the
// token fails here, instead of becoming a member that can never answer.
func Probe(trans *raft.NetworkTransport, self, id raft.ServerID, addr raft.ServerAddress, timeout time.Duration) error {
	req := &raft.RequestPreVoteRequest{RPCHeader: raft.RPCHeader{
		ProtocolVersion: raft.ProtocolVersionMax,
		ID:              []byte(self),
		Addr:            trans.EncodePeer(self, trans.LocalAddr()),
	}}
	answered := make(chan error, 1)
	// The RPC itself is bounded by the transport's own timeout; the
	// goroutine ends then at the latest.
	go func() { answered <- trans.RequestPreVote(id, addr, req, &raft.RequestPreVoteResponse{}) }()
	select {
	case err := <-answered:
		if err != nil {
			return fmt.Errorf("raft at %s: %w", addr, err)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("raft at %s did not answer within %v", addr, timeout)
	}
}
