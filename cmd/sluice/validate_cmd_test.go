package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/fsm/rules"
)

// `sluice rules validate` and PUT /v1/rules agree on every document: what
// one accepts the other accepts, and what one refuses (bad encoding, a rate
// no bucket can keep, a file over the body limit) the other refuses.
func TestRulesValidateAgreesWithPut(t *testing.T) {
	n := startLiveNode(t)
	good := `{"rules": [{"name": "a", "key": ["ip"], "limit": {"rate": 1000000000, "per": "1s"}}]}`
	cases := []struct {
		name, doc string
		wantExit  int
		wantPut   int
		wantErr   string
	}{
		{"valid", good, 0, http.StatusOK, ""},
		{"invalid UTF-8", "{\"rules\": [{\"name\": \"a\", \"match\": {\"route\": \"/\xc3\"}, \"key\": [\"ip\"], \"limit\": {\"rate\": 1, \"per\": \"1s\"}}]}",
			1, http.StatusBadRequest, "invalid UTF-8 at byte 46"},
		{"rate above 1e9/s", strings.Replace(good, "1000000000", "1000000001", 1),
			1, http.StatusBadRequest, "rules[0].limit.rate: 1000000001 per 1s is more than 1e9 per second"},
		{"over 1 MiB", good + strings.Repeat(" ", rules.MaxDocumentBytes),
			1, http.StatusRequestEntityTooLarge, "larger than 1048576 bytes"},
	}
	for _, tc := range cases {
		path := filepath.Join(t.TempDir(), "rules.json")
		if err := os.WriteFile(path, []byte(tc.doc), 0o600); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		exit := runRulesValidate([]string{"-f", path}, &stdout, &stderr)
		if exit != tc.wantExit || !strings.Contains(stderr.String(), tc.wantErr) {
			t.Errorf("%s: rules validate exit %d, stderr %q; want %d with %q", tc.name, exit, stderr.String(), tc.wantExit, tc.wantErr)
		}
		req, err := http.NewRequest(http.MethodPut, n.url+"/v1/rules", strings.NewReader(tc.doc))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.wantPut {
			t.Errorf("%s: PUT /v1/rules %d, want %d", tc.name, resp.StatusCode, tc.wantPut)
		}
	}
}
