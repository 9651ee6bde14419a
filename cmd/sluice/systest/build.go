// Package systest runs real `sluice` processes for system tests: it builds
// the binary once per test binary, starts nodes on free ports with their own
// data directories, and gives tests the faults an operator meets in
// production — kill -9, SIGTERM, SIGSTOP, restarts, cut links. It exists
// because in-process clusters share a Go runtime, clocks and memory with the
// test; only separate processes show that the shipped binary, its flags and
// its shutdown behave.
//
// Every process a test starts is killed when the test ends, pass or fail, and
// the logs of a failed test's nodes are printed.
package systest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// mainPackage is the sluice command, built as the binary under test.
const mainPackage = "github.com/sluicehq/sluice/cmd/sluice"

var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Main runs a test binary's tests and removes the binary built for them.
// Use it from TestMain: `func TestMain(m *testing.M) { os.Exit(systest.Main(m)) }`.
func Main(m *testing.M) int {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	return code
}

// Binary returns the path of the sluice binary, building it on first use.
// It is built without the race detector even under `go test -race`: the
// system tests measure timings on a small machine, and the processes' code is
// race-tested in-process by the packages' own tests.
func Binary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "sluice-systest-")
		if build.err != nil {
			return
		}
		build.path = filepath.Join(build.dir, "sluice")
		out, err := exec.Command("go", "build", "-o", build.path, mainPackage).CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build %s: %v\n%s", mainPackage, err, out)
		}
	})
	if build.err != nil {
		t.Fatalf("systest: %v", build.err)
	}
	return build.path
}
