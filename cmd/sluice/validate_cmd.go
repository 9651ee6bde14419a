package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sluicehq/sluice/fsm/rules"
)

// runRulesValidate checks a rules file offline and prints every error with
// its JSON path (exit 1), or a summary (exit 0).
func runRulesValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("rules validate", stdout, stderr)
	file := fs.String("f", "", "rules file to validate (- for stdin)")
	if err := parseFlags(fs, args); err != nil {
		return flagExit(err)
	}
	if *file == "" {
		fmt.Fprint(stderr, "sluice rules validate: -f FILE is required\n\n")
		printHelp(stderr, fs)
		return 2
	}
	data, err := readInput(*file)
	if err != nil {
		fmt.Fprintf(stderr, "sluice rules validate: %v\n", err)
		return 1
	}
	set, err := rules.Parse(data)
	if err != nil {
		var verr *rules.ValidationError
		if errors.As(err, &verr) {
			for _, fe := range verr.Errors {
				if fe.Path == "" { // the whole document: syntax, encoding
					fmt.Fprintln(stderr, fe.Msg)
					continue
				}
				fmt.Fprintf(stderr, "%s: %s\n", fe.Path, fe.Msg)
			}
		} else {
			fmt.Fprintln(stderr, err)
		}
		return 1
	}
	fmt.Fprintf(stdout, "%s: %d rules OK\n", *file, len(set.Rules))
	return 0
}

// readInput reads a rules file, or stdin for "-", refusing one larger than
// a node accepts (rules.MaxDocumentBytes, the API's body limit) without
// reading it all.
func readInput(name string) ([]byte, error) {
	in := os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		in = f
	}
	data, err := io.ReadAll(io.LimitReader(in, rules.MaxDocumentBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > rules.MaxDocumentBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes (1 MiB), the most a node accepts", name, rules.MaxDocumentBytes)
	}
	return data, nil
}
