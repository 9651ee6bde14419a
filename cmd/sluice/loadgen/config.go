// Package loadgen is the engine of `sluice bench`: it drives a node's check
// API open-loop (a fixed schedule, latency measured from when each call was
// released, so a slow server cannot hide its queueing, and the scheduler's
// own lateness reported apart) or closed-loop (a fixed
// number of callers), records every decision, and reports totals, latency
// percentiles from an HDR histogram, a per-second series, and whether what
// the cluster admitted stayed inside the SPEC §4 envelope of the configured
// limits. It is separate from the command so the measuring can be tested
// without a network.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/fsm/rules"
)

// Checker sends one call (one check, or a batch) to one node and returns one
// decision per request, in order.
type Checker func(ctx context.Context, reqs []check.Request) ([]check.Decision, error)

// Config describes one load run.
type Config struct {
	// Targets names the nodes, for the report; Checkers[i] talks to Targets[i].
	Targets  []string
	Checkers []Checker
	// Rate is the open-loop schedule in calls per second; 0 means closed loop.
	Rate float64
	// Concurrency is the number of callers: all busy in closed loop, the
	// most calls in flight in open loop.
	Concurrency int
	Duration    time.Duration
	// Keys is how many distinct values KeyAttr takes, round-robin; 1 is one hot key.
	Keys    int
	KeyAttr string
	// Attrs are sent with every check, besides KeyAttr.
	Attrs check.Attrs
	// Batch is the checks per call; 1 means single checks.
	Batch int
	// Rules, when known, let the report compare admissions with each rule's
	// limit; nil leaves that comparison out.
	Rules *rules.Set
}

// Validate reports a configuration that cannot run.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Checkers) == 0 || len(c.Checkers) != len(c.Targets) {
		errs = append(errs, errors.New("loadgen: one checker per target is required"))
	}
	if c.Rate < 0 {
		errs = append(errs, fmt.Errorf("loadgen: rate %v must not be negative", c.Rate))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("loadgen: concurrency %d must be at least 1", c.Concurrency))
	}
	if c.Duration <= 0 {
		errs = append(errs, fmt.Errorf("loadgen: duration %v must be positive", c.Duration))
	}
	if c.Keys < 1 || c.Keys > maxKeys {
		errs = append(errs, fmt.Errorf("loadgen: keys %d must be within 1..%d", c.Keys, maxKeys))
	}
	if c.KeyAttr == "" {
		errs = append(errs, errors.New("loadgen: a key attribute is required"))
	}
	if _, dup := c.Attrs.Get(c.KeyAttr); dup {
		errs = append(errs, fmt.Errorf("loadgen: attribute %q is the key attribute; it cannot also be fixed", c.KeyAttr))
	}
	if c.Batch < 1 || c.Batch > 1000 {
		errs = append(errs, fmt.Errorf("loadgen: batch %d must be within 1..1000", c.Batch))
	}
	return errors.Join(errs...)
}

// errWrongAnswerCount: a node answered a call with a different number of
// decisions than it carried checks.
var errWrongAnswerCount = errors.New("loadgen: answer does not have one decision per check")

// maxKeys is how many distinct addresses keyValue can make in 10.0.0.0/8.
const maxKeys = 1<<24 - 2

// keyValue is the KeyAttr value of key number i: an address in 10.0.0.0/8
// for "ip" (so logs and dashboards look like real traffic), else "key-i".
func keyValue(attr string, i int) string {
	if attr == "ip" {
		n := i + 1
		return fmt.Sprintf("10.%d.%d.%d", n>>16&0xff, n>>8&0xff, n&0xff)
	}
	return fmt.Sprintf("key-%d", i)
}
