package node

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// newRaftLogger bridges raft's hclog output into logger. Raft narrates
// every election at info level, so its info lines become debug records and,
// unless logger is at debug, are not even formatted.
func newRaftLogger(logger *slog.Logger) hclog.Logger {
	level := hclog.Warn
	if logger.Enabled(context.Background(), slog.LevelDebug) {
		level = hclog.Debug
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       "raft",
		Level:      level,
		JSONFormat: true,
		Output:     slogWriter{logger},
	})
}

// slogWriter receives one JSON record per Write from hclog.
type slogWriter struct{ logger *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	var rec map[string]any
	if err := json.Unmarshal(p, &rec); err != nil {
		w.logger.Warn(strings.TrimSpace(string(p)))
		return len(p), nil
	}
	msg, _ := rec["@message"].(string)
	level, _ := rec["@level"].(string)
	keys := make([]string, 0, len(rec))
	for k := range rec {
		if !strings.HasPrefix(k, "@") || k == "@module" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	attrs := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		attrs = append(attrs, strings.TrimPrefix(k, "@"), rec[k])
	}
	w.logger.Log(context.Background(), slogLevel(level), msg, attrs...)
	return len(p), nil
}

func slogLevel(hclogLevel string) slog.Level {
	switch hclogLevel {
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelDebug
	}
}
