package api

import (
	"bytes"
	"io"
	"net/http"
	"sync"

	"github.com/gin-gonic/gin"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/api/middleware"
)

// checkScratch is the per-request reusable memory of the check endpoints:
// body buffer, decoder, decoded requests and decisions, encoded answer.
type checkScratch struct {
	body      bytes.Buffer
	dec       check.Decoder
	req       check.Request
	reqs      []check.Request
	decision  check.Decision
	decisions []check.Decision
	out       []byte
}

var scratchPool = sync.Pool{New: func() any { return new(checkScratch) }}

// readBody reads the (size-limited) request body into the scratch buffer.
func (sc *checkScratch) readBody(r *http.Request) error {
	sc.body.Reset()
	if r.ContentLength > 0 && r.ContentLength <= maxBodyBytes {
		sc.body.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	_, err := io.Copy(&sc.body, r.Body)
	return err
}

func (s *Server) handleCheck(c *gin.Context) {
	sc := scratchPool.Get().(*checkScratch)
	defer scratchPool.Put(sc)
	if err := sc.readBody(c.Request); err != nil {
		writeError(c, err)
		return
	}
	if err := sc.dec.DecodeRequest(sc.body.Bytes(), &sc.req); err != nil {
		writeError(c, err)
		return
	}
	if err := s.cfg.Engine.DecideInto(c.Request.Context(), &sc.req, &sc.decision); err != nil {
		writeError(c, err)
		return
	}
	middleware.SetHeaders(c.Writer.Header(), sc.decision)
	status := http.StatusOK
	if !sc.decision.Allowed {
		status = http.StatusTooManyRequests
	}
	sc.out = check.AppendDecision(sc.out[:0], &sc.decision)
	c.Data(status, "application/json", sc.out)
}

func (s *Server) handleBatch(c *gin.Context) {
	sc := scratchPool.Get().(*checkScratch)
	defer scratchPool.Put(sc)
	if err := sc.readBody(c.Request); err != nil {
		writeError(c, err)
		return
	}
	var err error
	if sc.reqs, err = sc.dec.DecodeBatch(sc.body.Bytes(), sc.reqs, maxBatch); err != nil {
		writeError(c, err)
		return
	}
	if cap(sc.decisions) < len(sc.reqs) {
		sc.decisions = make([]check.Decision, len(sc.reqs))
	}
	sc.decisions = sc.decisions[:len(sc.reqs)]
	if err := s.cfg.Engine.DecideBatch(c.Request.Context(), sc.reqs, sc.decisions); err != nil {
		writeError(c, err)
		return
	}
	out := append(sc.out[:0], `{"results":[`...)
	for i := range sc.decisions {
		if i > 0 {
			out = append(out, ',')
		}
		out = check.AppendDecision(out, &sc.decisions[i])
	}
	sc.out = append(out, "]}"...)
	c.Data(http.StatusOK, "application/json", sc.out)
}
