package main

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoRoot is where the Dockerfile, docker-compose.yml and deploy/ live.
const repoRoot = "../.."

func readRepoFile(t *testing.T, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

var flagLine = regexp.MustCompile(`^  -([a-z0-9-]+)`)

// serveFlagNames lists the flags `sluice serve -h` prints: whatever the
// binary really registers, not a copy of the list.
func serveFlagNames(t *testing.T) map[string]bool {
	t.Helper()
	var stdout, stderr bytes.Buffer
	run([]string{"serve", "-h"}, &stdout, &stderr)
	names := map[string]bool{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if m := flagLine.FindStringSubmatch(sc.Text()); m != nil {
			names[m[1]] = true
		}
	}
	if !names["node-id"] || !names["redis"] {
		t.Fatalf("could not read serve's flags from -h:\n%s%s", stdout.String(), stderr.String())
	}
	return names
}

// serveSettings is one deployed node's serve configuration: environment
// first, then flags, which win (SPEC §2). It fails the test on any flag or
// SLUICE_ variable the binary does not accept.
func serveSettings(t *testing.T, where string, flags map[string]bool, env map[string]string, args []string) map[string]string {
	t.Helper()
	settings := map[string]string{}
	for name, value := range env {
		if !strings.HasPrefix(name, "SLUICE_") {
			continue
		}
		flag := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, "SLUICE_")), "_", "-")
		if !flags[flag] || envName(flag) != name {
			t.Errorf("%s: environment variable %s is no serve flag's", where, name)
			continue
		}
		settings[flag] = value
	}
	if len(args) == 0 || args[0] != "serve" {
		t.Errorf("%s: command %v does not start with serve", where, args)
		return settings
	}
	for i := 1; i < len(args); i++ {
		name, value, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !strings.HasPrefix(args[i], "-") || !flags[name] {
			t.Errorf("%s: %q is not a serve flag", where, args[i])
		}
		if !hasValue && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			i++
			value = args[i]
		}
		settings[name] = value
	}
	return settings
}

// portOf returns the port of a host:port setting.
func portOf(t *testing.T, where, hostPort string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		t.Errorf("%s: %q is not host:port: %v", where, hostPort, err)
	}
	return port
}

// dockerfile is the parsed Dockerfile: instructions with continuation lines joined.
type dockerInstruction struct {
	cmd  string
	args []string
}

func parseDockerfile(t *testing.T) []dockerInstruction {
	t.Helper()
	var out []dockerInstruction
	var pending string
	for _, line := range strings.Split(string(readRepoFile(t, "Dockerfile")), "\n") {
		trimmed := strings.TrimSpace(line)
		if pending == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cont, ok := strings.CutSuffix(trimmed, `\`); ok {
			pending += cont + " "
			continue
		}
		fields := strings.Fields(pending + trimmed)
		pending = ""
		out = append(out, dockerInstruction{cmd: strings.ToUpper(fields[0]), args: fields[1:]})
	}
	return out
}

// imageEnv is the runtime image's ENV (the last stage's).
func imageEnv(ins []dockerInstruction) map[string]string {
	env := map[string]string{}
	for _, in := range ins {
		switch in.cmd {
		case "FROM":
			clear(env)
		case "ENV":
			for _, kv := range in.args {
				if k, v, ok := strings.Cut(kv, "="); ok {
					env[k] = v
				}
			}
		}
	}
	return env
}
