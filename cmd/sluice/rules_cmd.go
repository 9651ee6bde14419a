package main

import (
	"context"
	"fmt"
	"io"
)

// runRulesRemote implements `sluice rules get` and `sluice rules apply -f
// FILE` against a running cluster through the admin API.
func runRulesRemote(sub string, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("rules "+sub, stdout, stderr)
	var f adminFlags
	f.register(fs)
	var file string
	if sub == "apply" {
		fs.StringVar(&file, "f", "", "rules file to apply (- for stdin)")
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
	case sub == "apply" && len(rest) == 0 && file != "":
		data, err := readInput(file)
		if err != nil {
			fmt.Fprintf(stderr, "sluice rules apply: %v\n", err)
			return 1
		}
		version, err := f.client().SetRules(ctx, data)
		if err != nil {
			return adminFailed(stderr, "rules apply", err)
		}
		fmt.Fprintf(stdout, "rules applied: version %d\n", version)
		return 0
	}
	printHelp(stderr, fs)
	return 2
}
