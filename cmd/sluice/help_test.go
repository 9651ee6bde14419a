package main

import (
	"bytes"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestHelpExitsZeroEverywhere: -h and --help on the binary, every command,
// every group and every subcommand print the help to stdout and exit 0;
// each help names its command and lists its flags.
func TestHelpExitsZeroEverywhere(t *testing.T) {
	commands := [][]string{{}}
	for name := range commandHelp {
		commands = append(commands, strings.Fields(name))
	}
	for group := range commandGroups {
		commands = append(commands, []string{group})
	}
	for _, cmd := range commands {
		for _, h := range []string{"-h", "--help"} {
			args := append(slices.Clone(cmd), h)
			var stdout, stderr bytes.Buffer
			if code := run(args, &stdout, &stderr); code != 0 {
				t.Errorf("sluice %s: exit %d, want 0 (stderr %q)", strings.Join(args, " "), code, stderr.String())
			}
			want := strings.TrimSpace("usage: sluice " + strings.Join(cmd, " "))
			if !strings.HasPrefix(stdout.String(), want) {
				t.Errorf("sluice %s: help does not start with %q:\n%s", strings.Join(args, " "), want, stdout.String())
			}
			if len(cmd) > 0 && !strings.Contains(stdout.String(), "\nflags:\n") {
				t.Errorf("sluice %s: help lists no flags:\n%s", strings.Join(args, " "), stdout.String())
			}
		}
	}
}

// TestGroupHelpListsSubcommandsAndFlags: `sluice rules -h` names every
// subcommand (validate included) with its flags; so does cluster.
func TestGroupHelpListsSubcommandsAndFlags(t *testing.T) {
	cases := map[string][]string{
		"rules":   {"usage: sluice rules validate -f FILE", "usage: sluice rules get", "usage: sluice rules apply -f FILE", "  -f string", "  -addr string", "  -token string"},
		"cluster": {"usage: sluice cluster status", "usage: sluice cluster remove ID", "  -json", "  -addr string"},
	}
	for group, wants := range cases {
		var stdout, stderr bytes.Buffer
		if code := run([]string{group, "-h"}, &stdout, &stderr); code != 0 {
			t.Fatalf("sluice %s -h: exit %d", group, code)
		}
		for _, want := range wants {
			if !strings.Contains(stdout.String(), want) {
				t.Errorf("sluice %s -h lacks %q:\n%s", group, want, stdout.String())
			}
		}
	}
}

// TestUsageErrorsExitTwo: a missing or unknown subcommand and an unknown
// flag still fail with exit 2 and explain themselves on stderr.
func TestUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{{}, {"rules"}, {"rules", "nope"}, {"cluster", "nope"}, {"rules", "get", "--nope"}, {"serve", "--nope"}, {"rules", "validate"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 {
			t.Errorf("sluice %s: exit %d, want 2", strings.Join(args, " "), code)
		}
		if stderr.Len() == 0 || stdout.Len() != 0 {
			t.Errorf("sluice %s: stdout %q stderr %q; want the explanation on stderr only", strings.Join(args, " "), stdout.String(), stderr.String())
		}
	}
}

// TestMakeHelpListsDocumentedTargets: `make help` exits 0 and prints every
// target the Makefile documents with a "## target: what" comment, and each
// documented target really is a rule.
func TestMakeHelpListsDocumentedTargets(t *testing.T) {
	makefile := readRepoFile(t, "Makefile")
	documented := regexp.MustCompile(`(?m)^## ([a-z-]+): `).FindAllStringSubmatch(string(makefile), -1)
	if len(documented) < 5 {
		t.Fatalf("found only %d documented targets in the Makefile", len(documented))
	}
	out, err := exec.Command("make", "-s", "-C", repoRoot, "help").CombinedOutput()
	if err != nil {
		t.Fatalf("make help: %v\n%s", err, out)
	}
	for _, m := range documented {
		target := m[1]
		if !regexp.MustCompile(`(?m)^` + target + `:`).Match(makefile) {
			t.Errorf("documented target %q has no rule", target)
		}
		if !regexp.MustCompile(`(?m)^  ` + target + ` `).Match(out) {
			t.Errorf("make help does not list %q:\n%s", target, out)
		}
	}
}
