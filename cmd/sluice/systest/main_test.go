package systest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/cmd/sluice/systest"
)

func TestMain(m *testing.M) { os.Exit(systest.Main(m)) }

// rulesDoc is a rules document with one rule limiting each user to burst
// checks, refilled at burst per minute: slow enough that a test sees exactly
// burst admissions.
func rulesDoc(name string, burst int) string {
	return fmt.Sprintf(`{"rules": [{"name": %q, "key": ["user"], "limit": {"rate": %d, "per": "1m", "burst": %d}}]}`,
		name, burst, burst)
}

// checkUser asks p for one decision for user and returns the status and answer.
func checkUser(t *testing.T, p *systest.Proc, user string) (int, check.Decision) {
	t.Helper()
	return decide(t, p, fmt.Sprintf(`{"attributes": {"user": %q}}`, user))
}

// decide posts one check body to p and returns the status and answer.
func decide(t *testing.T, p *systest.Proc, checkBody string) (int, check.Decision) {
	t.Helper()
	status, body, err := systest.Do(context.Background(), http.MethodPost, p.URL()+"/v1/check", checkBody, "")
	if err != nil {
		t.Fatalf("check on %s: %v", p.ID, err)
	}
	var d check.Decision
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("check on %s answered %d %q: %v", p.ID, status, body, err)
	}
	return status, d
}

// putRules replaces the rules through p and returns the new version.
func putRules(t *testing.T, p *systest.Proc, doc, token string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	version, err := p.Client(token).SetRules(ctx, []byte(doc))
	if err != nil {
		t.Fatalf("PUT /v1/rules on %s: %v", p.ID, err)
	}
	return version
}

// rulesOn reads GET /v1/rules from p.
func rulesOn(p *systest.Proc) (admin.RulesDoc, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return p.Client("").Rules(ctx)
}

// waitFor polls cond every 20 ms until it returns nil or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hasRules is a waitFor condition: p serves rules of at least version whose
// first rule is named name.
func hasRules(p *systest.Proc, version uint64, name string) func() error {
	return func() error {
		doc, err := rulesOn(p)
		if err != nil {
			return err
		}
		var rules []struct{ Name string }
		if err := json.Unmarshal(doc.Rules, &rules); err != nil {
			return err
		}
		if doc.Version < version || len(rules) == 0 || rules[0].Name != name {
			return fmt.Errorf("%s has version %d rules %s, want version %d with %q", p.ID, doc.Version, doc.Rules, version, name)
		}
		return nil
	}
}
