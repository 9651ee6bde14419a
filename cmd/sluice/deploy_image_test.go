package main

import (
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/fsm/rules"
)

// The Dockerfile builds what exists and runs what it built: COPY sources
// exist, the entrypoint is the copied binary, the health check is the
// binary's own health command, the user is not root, and every SLUICE_
// variable is a serve flag.
func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t)
	flags := serveFlagNames(t)
	copied := map[string]string{} // destination → source, runtime stage
	var entrypoint, healthcheck []string
	user := ""
	chowned := map[string]bool{}
	for _, in := range ins {
		switch in.cmd {
		case "FROM":
			clear(copied)
		case "COPY":
			var srcs []string
			fromStage := false
			for _, a := range in.args {
				switch {
				case strings.HasPrefix(a, "--from="):
					fromStage = true
				case strings.HasPrefix(a, "--chown="):
				default:
					srcs = append(srcs, a)
				}
			}
			dst := srcs[len(srcs)-1]
			for _, src := range srcs[:len(srcs)-1] {
				if !fromStage {
					if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
						t.Errorf("COPY %s: %v", src, err)
					}
				}
				copied[dst] = src
			}
			if slices.ContainsFunc(in.args, func(a string) bool { return strings.HasPrefix(a, "--chown=") }) {
				chowned[dst] = true
			}
		case "RUN":
			joined := strings.Join(in.args, " ")
			if strings.Contains(joined, "go build") && !strings.Contains(joined, "./cmd/sluice") {
				t.Errorf("the build does not build ./cmd/sluice: %s", joined)
			}
		case "USER":
			user = in.args[0]
		case "ENTRYPOINT":
			entrypoint = execForm(t, in)
		case "HEALTHCHECK":
			i := slices.Index(in.args, "CMD")
			healthcheck = execForm(t, dockerInstruction{args: in.args[i+1:]})
		}
	}
	if len(entrypoint) != 1 || copied[entrypoint[0]] == "" {
		t.Fatalf("ENTRYPOINT %v is not the single binary COPY'd into the image", entrypoint)
	}
	if len(healthcheck) != 2 || healthcheck[0] != entrypoint[0] || healthcheck[1] != "health" {
		t.Errorf("HEALTHCHECK %v; want [%s health] (no shell in the image)", healthcheck, entrypoint[0])
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("USER %q: the image must not run as root", user)
	}
	env := imageEnv(ins)
	settings := serveSettings(t, "Dockerfile", flags, env, []string{"serve"})
	if !chowned[settings["data-dir"]] {
		t.Errorf("data dir %q is not created owned by the image's user", settings["data-dir"])
	}
	if src := copied[settings["rules"]]; src == "" {
		t.Errorf("SLUICE_RULES %q is not a file COPY'd into the image", settings["rules"])
	} else if _, err := rules.Parse(readRepoFile(t, src)); err != nil {
		t.Errorf("image rules %s: %v", src, err)
	}
}

// execForm reads a JSON exec-form instruction argument (no shell needed).
func execForm(t *testing.T, in dockerInstruction) []string {
	t.Helper()
	var argv []string
	if err := json.Unmarshal([]byte(strings.Join(in.args, " ")), &argv); err != nil || len(argv) == 0 {
		t.Fatalf("%s %v is not in exec form: %v", in.cmd, in.args, err)
	}
	return argv
}

// imageUID is the numeric user the image runs as.
func imageUID(t *testing.T) string {
	for _, in := range parseDockerfile(t) {
		if in.cmd == "USER" {
			uid, _, _ := strings.Cut(in.args[0], ":")
			return uid
		}
	}
	t.Fatal("Dockerfile has no USER")
	return ""
}

// imageDataDir is the runtime image's SLUICE_DATA_DIR.
func imageDataDir(t *testing.T) string {
	dir := imageEnv(parseDockerfile(t))["SLUICE_DATA_DIR"]
	if !path.IsAbs(dir) {
		t.Fatalf("image SLUICE_DATA_DIR %q is not absolute", dir)
	}
	return dir
}
