package main

import (
	"context"
	"fmt"
	"io"
)

// runRulesRemote implements `sluice rules get`, `sluice rules apply -f FILE
// [--dry-run]` and `sluice rules diff -f FILE` against a running cluster
// through the admin API. Exit 0 on success (for a dry run or a diff: the
// change was printed, whether or not there is one), 1 when the node refused
// the rules or could not be asked, 2 on a usage error.
func runRulesRemote(sub string, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("rules "+sub, stdout, stderr)
	var f adminFlags
	f.register(fs)
	var file string
	var dryRun, asJSON bool
	if sub == "apply" || sub == "diff" {
		fs.StringVar(&file, "f", "", "rules file (- for stdin)")
		fs.BoolVar(&asJSON, "json", false, "print the node's JSON answer")
	}
	if sub == "apply" {
		fs.BoolVar(&dryRun, "dry-run", false, "print what would change, with the keys the new limits would throttle at once; apply nothing")
	}
	rest, err := f.parse(fs, args)
	if err != nil {
		return flagExit(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	switch {
	case sub == "get" && len(rest) == 0:
		doc, err := f.client().Rules(ctx)
		if err != nil {
			return adminFailed(stderr, "rules get", err)
		}
		return printJSON(stdout, stderr, doc)
	case (sub == "apply" || sub == "diff") && len(rest) == 0 && file != "":
		data, err := readInput(file)
		if err != nil {
			fmt.Fprintf(stderr, "sluice rules %s: %v\n", sub, err)
			return 1
		}
		if sub == "apply" && !dryRun {
			version, err := f.client().SetRules(ctx, data)
			if err != nil {
				return adminFailed(stderr, "rules apply", err)
			}
			fmt.Fprintf(stdout, "rules applied: version %d\n", version)
			return 0
		}
		change, err := f.client().DryRunRules(ctx, data)
		if err != nil {
			return adminFailed(stderr, "rules "+sub, err)
		}
		if sub == "diff" {
			change.Throttled = nil // diff prints the change only
		}
		if asJSON {
			return printJSON(stdout, stderr, change)
		}
		printChange(stdout, change, sub == "apply")
		return 0
	}
	printHelp(stderr, fs)
	return 2
}
