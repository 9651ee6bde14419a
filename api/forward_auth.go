package api

import (
	"errors"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/sluicehq/sluice/api/check"
	"github.com/sluicehq/sluice/api/clientip"
	"github.com/sluicehq/sluice/api/middleware"
)

// sluiceHeaderPrefix marks headers that carry extra attributes:
// X-Sluice-Tenant: acme → tenant=acme.
const sluiceHeaderPrefix = "X-Sluice-"

// derivedAttrs are the attributes forward-auth computes itself; an
// X-Sluice-* header may not override them (X-Sluice-Ip would let whoever
// sets headers choose the client's key).
var derivedAttrs = []string{"ip", "route", "method", "host"}

// handleForwardAuth answers a reverse proxy's bodiless subrequest (nginx
// auth_request, Traefik ForwardAuth) about the original request described in
// its headers (SPEC §5): the status and rate-limit headers of /v1/check, no
// body. Any method is served, since Envoy's ext_authz forwards the original
// one; the method attribute still comes only from the headers.
// ?deny_status=403 answers denials with 403, since nginx's auth_request
// understands only 2xx, 401 and 403.
func (s *Server) handleForwardAuth(c *gin.Context) {
	denyStatus := http.StatusTooManyRequests
	if v, ok := c.GetQuery("deny_status"); ok {
		if v != "403" {
			writeError(c, &check.FieldError{Field: "deny_status", Msg: "must be 403 (leave it out to deny with 429)"})
			return
		}
		denyStatus = http.StatusForbidden
	}
	sc := scratchPool.Get().(*checkScratch)
	defer scratchPool.Put(sc)
	attrs, err := forwardedAttrs(c.Request, s.cfg.TrustedProxies, sc.req.Attributes[:0])
	sc.req = check.Request{Attributes: attrs}
	if err != nil {
		writeError(c, err)
		return
	}
	if err := s.cfg.Engine.DecideInto(c.Request.Context(), &sc.req, &sc.decision); err != nil {
		writeError(c, err)
		return
	}
	middleware.SetHeaders(c.Writer.Header(), sc.decision)
	if sc.decision.Allowed {
		c.Status(http.StatusOK)
		return
	}
	c.Status(denyStatus)
}

// forwardedAttrs appends to dst the attributes of the request a proxy
// describes in r's headers. Headers that are absent leave their attribute
// out, so rules keyed on it do not apply (SPEC §3).
func forwardedAttrs(r *http.Request, trusted clientip.Proxies, dst check.Attrs) (check.Attrs, error) {
	ip, err := trusted.Of(r)
	if err != nil {
		return dst, err
	}
	dst = append(dst, check.Attr{Name: "ip", Value: ip})
	if name, raw := firstHeader(r.Header, "X-Original-URI", "X-Forwarded-Uri"); name != "" {
		route, err := routeOf(raw)
		if err != nil {
			return dst, &check.FieldError{Field: name, Msg: err.Error()}
		}
		if dst, err = appendAttr(dst, name, "route", route); err != nil {
			return dst, err
		}
	}
	if name, method := firstHeader(r.Header, "X-Original-Method", "X-Forwarded-Method"); name != "" {
		if dst, err = appendAttr(dst, name, "method", method); err != nil {
			return dst, err
		}
	}
	if host := r.Header.Get("X-Forwarded-Host"); host != "" {
		if dst, err = appendAttr(dst, "X-Forwarded-Host", "host", strings.ToLower(host)); err != nil {
			return dst, err
		}
	}
	return appendSluiceHeaders(r.Header, dst)
}

// appendAttr appends attribute name=value taken from header, refusing it
// with a 400 naming the header when it breaks check's bounds.
func appendAttr(dst check.Attrs, header, name, value string) (check.Attrs, error) {
	if len(dst) == check.MaxAttributes {
		return dst, &check.FieldError{Field: header, Msg: check.TooManyAttributes}
	}
	if msg := check.ValueProblem(value); msg != "" {
		return dst, &check.FieldError{Field: header, Msg: msg}
	}
	if msg := check.NameProblem(name); msg != "" {
		return dst, &check.FieldError{Field: sluiceHeaderPrefix + "*", Msg: msg}
	}
	return append(dst, check.Attr{Name: name, Value: value}), nil
}

// firstHeader returns the first of names present with a non-empty value.
func firstHeader(h http.Header, names ...string) (name, value string) {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return n, v
		}
	}
	return "", ""
}

// routeOf is the path of a forwarded URI (origin form "/a?b" or absolute
// form "http://h/a?b"), query and fragment dropped, percent-decoded and with
// dot segments and doubled slashes resolved as the upstream will see them:
// /%6Cogin and /api/../login are /login, so an encoding trick cannot slip
// past a rule on /login.
func routeOf(raw string) (string, error) {
	var p string
	if strings.HasPrefix(raw, "/") || strings.HasPrefix(raw, "?") {
		escaped, _, _ := strings.Cut(raw, "?")
		escaped, _, _ = strings.Cut(escaped, "#")
		unescaped, err := url.PathUnescape(escaped)
		if err != nil {
			return "", errors.New("bad percent-encoding: " + err.Error())
		}
		p = unescaped
	} else {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme == "" {
			return "", errors.New("must be an absolute path or an absolute URI")
		}
		p = u.Path
	}
	if p == "" {
		return "/", nil
	}
	cleaned := path.Clean(p)
	if strings.HasSuffix(p, "/") && cleaned != "/" {
		cleaned += "/"
	}
	return cleaned, nil
}

// appendSluiceHeaders adds one attribute per X-Sluice-<Name> header, named
// <name> in lower case with dashes kept (X-Sluice-Api-Key → api-key).
// Empty values are skipped, as nginx skips empty headers; a header given
// twice, or one naming a derived attribute, is an error.
func appendSluiceHeaders(h http.Header, dst check.Attrs) (check.Attrs, error) {
	for key, values := range h {
		if len(key) <= len(sluiceHeaderPrefix) || !strings.EqualFold(key[:len(sluiceHeaderPrefix)], sluiceHeaderPrefix) {
			continue
		}
		name := strings.ToLower(key[len(sluiceHeaderPrefix):])
		switch {
		case len(values) > 1:
			return dst, &check.FieldError{Field: key, Msg: "given more than once"}
		case slices.Contains(derivedAttrs, name):
			return dst, &check.FieldError{Field: key, Msg: "attribute " + name + " is derived from the proxy's headers and cannot be set"}
		case values[0] == "":
			continue
		}
		var err error
		if dst, err = appendAttr(dst, key, name, values[0]); err != nil {
			return dst, err
		}
	}
	return dst, nil
}
