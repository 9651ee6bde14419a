package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/grpclog"
)

// routeLibraryLogs sends every library's log output through logger, so
// --log-format json yields only JSON lines: the standard log package (and
// with it net/http's server errors), go-redis, gin and gRPC. Raft's hclog
// output is routed by node (newRaftLogger). Levels: a library's errors are
// errors, its chatter is debug, and go-redis's failed dials — expected
// while Redis is down, which the node reports itself as fallback — are debug.
func routeLibraryLogs(logger *slog.Logger) {
	slog.SetDefault(logger)
	redis.SetLogger(redisLogger{logger.With("lib", "go-redis")})
	gin.DefaultWriter = lineWriter{logger.With("lib", "gin"), slog.LevelDebug}
	gin.DefaultErrorWriter = lineWriter{logger.With("lib", "gin"), slog.LevelError}
	grpclog.SetLoggerV2(grpcLogger{logger.With("lib", "grpc")})
}

// lineWriter logs each Write as one record at level.
type lineWriter struct {
	logger *slog.Logger
	level  slog.Level
}

func (w lineWriter) Write(p []byte) (int, error) {
	w.logger.Log(context.Background(), w.level, strings.TrimSpace(string(p)))
	return len(p), nil
}

// redisLogger is go-redis's logger (redis.SetLogger).
type redisLogger struct{ logger *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	level := slog.LevelWarn
	if strings.Contains(msg, "failed to dial") {
		level = slog.LevelDebug
	}
	l.logger.Log(ctx, level, msg)
}

// grpcLogger is gRPC's logger (grpclog.LoggerV2): info is debug here.
type grpcLogger struct{ logger *slog.Logger }

func (l grpcLogger) log(level slog.Level, msg string) {
	l.logger.Log(context.Background(), level, strings.TrimSpace(msg))
}

func (l grpcLogger) Info(args ...any)   { l.log(slog.LevelDebug, fmt.Sprint(args...)) }
func (l grpcLogger) Infoln(args ...any) { l.log(slog.LevelDebug, fmt.Sprintln(args...)) }
func (l grpcLogger) Infof(format string, args ...any) {
	l.log(slog.LevelDebug, fmt.Sprintf(format, args...))
}
func (l grpcLogger) Warning(args ...any)   { l.log(slog.LevelWarn, fmt.Sprint(args...)) }
func (l grpcLogger) Warningln(args ...any) { l.log(slog.LevelWarn, fmt.Sprintln(args...)) }
func (l grpcLogger) Warningf(format string, args ...any) {
	l.log(slog.LevelWarn, fmt.Sprintf(format, args...))
}
func (l grpcLogger) Error(args ...any)   { l.log(slog.LevelError, fmt.Sprint(args...)) }
func (l grpcLogger) Errorln(args ...any) { l.log(slog.LevelError, fmt.Sprintln(args...)) }
func (l grpcLogger) Errorf(format string, args ...any) {
	l.log(slog.LevelError, fmt.Sprintf(format, args...))
}
func (l grpcLogger) Fatal(args ...any)                 { l.Error(args...); os.Exit(1) }
func (l grpcLogger) Fatalln(args ...any)               { l.Errorln(args...); os.Exit(1) }
func (l grpcLogger) Fatalf(format string, args ...any) { l.Errorf(format, args...); os.Exit(1) }

// V reports whether verbose logging at level is on: gRPC's verbosity
// levels are all debug detail.
func (l grpcLogger) V(level int) bool { return l.logger.Enabled(context.Background(), slog.LevelDebug) }
