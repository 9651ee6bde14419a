package systest

import (
	"context"
	"io"
	"net/http"
	"strings"
	"time"
)

// httpClient is shared by the harness's one-off calls; it never waits long,
// since a paused or cut-off node must not hang a test.
var httpClient = &http.Client{Timeout: 3 * time.Second}

// Get fetches url and returns the status and body.
func Get(url string) (int, string, error) {
	return Do(context.Background(), http.MethodGet, url, "", "")
}

// Do sends one request with an optional JSON body and bearer token.
func Do(ctx context.Context, method, url, body, token string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
