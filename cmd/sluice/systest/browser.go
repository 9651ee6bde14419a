package systest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// browserTimeout bounds one headless chromium run; it needs a few seconds
// quiet, three or four times that on a loaded machine.
const browserTimeout = 50 * time.Second

// Page is what a headless browser made of a page.
type Page struct {
	// DOM is the document after the page's scripts ran (--dump-dom).
	DOM string
	// Screenshot is the viewport as PNG (--screenshot).
	Screenshot []byte
}

// Browse loads url in headless chromium with a viewport of width×height,
// lets the page's timers run for budget of virtual time (chromium advances
// it while the page waits on nothing, so a page that polls every few
// seconds polls several times in well under that), and returns the DOM and
// a screenshot. Debian's chromium package must be installed (.ci/run does);
// without it the test fails rather than passing by not running.
func Browse(t testing.TB, url string, width, height int, budget time.Duration) Page {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("systest: chromium not found in PATH: install Debian's chromium package (apt-get install chromium; .ci/run does when it is absent)")
	}
	dir := t.TempDir()
	shot := filepath.Join(dir, "screenshot.png")
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--hide-scrollbars", "--user-data-dir="+filepath.Join(dir, "profile"),
		"--window-size="+strconv.Itoa(width)+","+strconv.Itoa(height),
		"--virtual-time-budget="+strconv.FormatInt(budget.Milliseconds(), 10),
		"--screenshot="+shot, "--dump-dom", url)
	cmd.Dir = dir
	var stderr tailBuffer
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("systest: chromium %s: %v\n%s", url, err, stderr.String())
	}
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("systest: chromium wrote no screenshot: %v\n%s", err, stderr.String())
	}
	return Page{DOM: string(dom), Screenshot: png}
}

// tailBuffer keeps the last few KiB written to it: chromium's stderr is
// chatty (D-Bus complaints in a container) and only its end explains a failure.
type tailBuffer struct{ b []byte }

const tailBytes = 4 << 10

func (w *tailBuffer) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	if len(w.b) > tailBytes {
		w.b = w.b[len(w.b)-tailBytes:]
	}
	return len(p), nil
}

func (w *tailBuffer) String() string { return string(w.b) }
