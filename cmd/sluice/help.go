package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// commandHelp is what -h/--help prints above a command's flags: how it is
// called and what it does. Keyed by the flag set's name.
var commandHelp = map[string]struct{ args, about string }{
	"serve":          {"[flags]", "Run a node. With no flags at all: one local node on :8000, rules from testdata/rules.json."},
	"rules validate": {"-f FILE", "Validate a rules file offline. Exit 1 listing every error with its JSON path."},
	"rules get":      {"[flags]", "Print the cluster's rules (admin API)."},
	"rules apply":    {"-f FILE [flags]", "Replace the cluster's rules (admin API; a follower forwards to the leader). With --dry-run: print what would change and how many active keys the new limits would throttle at once, apply nothing. Exit 0 applied (or printed), 1 refused or unreachable, 2 usage."},
	"rules diff":     {"-f FILE [flags]", "Print what applying FILE would change, validated by the node against its rules; apply nothing. Exit 0 printed (changes or none), 1 refused or unreachable, 2 usage."},
	"cluster status": {"[flags]", "Show members, leader, term and leases (admin API)."},
	"cluster remove": {"ID [flags]", "Remove a member from the cluster (admin API)."},
	"check":          {"[flags] name=value ...", "Ask a node for one decision and print the JSON answer. Exit 0 allowed, 2 denied, 1 on error."},
	"bench":          {"[flags]", "Load generator: live progress, then a table (and JSON and a chart with --out). Exit 3 if a limit broke."},
	"health":         {"[flags]", "Exit 0 iff the node's /healthz (or /readyz with --ready) answers 200."},
	"top":            {"[flags]", "Who is being limited: each rule's admit and deny rates and its top denied keys over the whole cluster, refreshed like top (admin API). Ctrl-C quits."},
}

// commandGroups lists the subcommands of the commands that have them, in
// the order their help shows them.
var commandGroups = map[string][]string{
	"rules":   {"validate", "get", "apply", "diff"},
	"cluster": {"status", "remove"},
}

// newFlagSet returns a flag set that reports errors (to stderr) instead of
// exiting; -h/--help prints its help to stdout (see parseFlags).
func newFlagSet(name string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printHelp(stdout, fs) }
	return fs
}

// printHelp writes fs's usage line, description and flags to w.
func printHelp(w io.Writer, fs *flag.FlagSet) {
	h := commandHelp[fs.Name()]
	fmt.Fprintf(w, "usage: sluice %s %s\n\n%s\n\nflags:\n", fs.Name(), h.args, h.about)
	out := fs.Output()
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(out)
}

// flagExit is the exit status of a failed parseFlags: 0 after -h/--help,
// 2 after a usage error.
func flagExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

// runGroup dispatches `sluice <group> <sub> ...`; -h/--help or a missing
// or unknown subcommand prints the group's help: every subcommand with its
// flags.
func runGroup(group string, args []string, stdout, stderr io.Writer, sub func(name string, args []string, stdout, stderr io.Writer) int) int {
	if len(args) > 0 && !isHelpArg(args[0]) {
		for _, s := range commandGroups[group] {
			if args[0] == s {
				return sub(s, args[1:], stdout, stderr)
			}
		}
		fmt.Fprintf(stderr, "sluice %s: unknown subcommand %q\n\n", group, args[0])
	}
	w, status := stderr, 2
	if len(args) > 0 && isHelpArg(args[0]) {
		w, status = stdout, 0
	}
	subs := commandGroups[group]
	fmt.Fprintf(w, "usage: sluice %s %s [flags]\n\nsubcommands:\n", group, strings.Join(subs, "|"))
	for _, s := range subs {
		fmt.Fprintln(w)
		sub(s, []string{"-h"}, w, stderr)
	}
	return status
}

func isHelpArg(a string) bool {
	switch a {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}
