package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/ui"
)

// adminAuth decides who may call the admin routes: requests bearing the
// token; without a token configured, only loopback peers, judged by the TCP
// peer address because X-Forwarded-For is whatever the client says it is.
// A client that presented a node certificate (nodeClient, nil without node
// TLS) is another node of the cluster and admitted either way. A status-page
// session cookie (api/ui) stands in for the token on GET only, so a request
// another site makes the browser send can read nothing it could show that
// site and write nothing at all.
type adminAuth struct {
	token      string
	want       [sha256.Size]byte
	nodeClient func(*tls.ConnectionState) bool
}

func newAdminAuth(token string, nodeClient func(*tls.ConnectionState) bool) adminAuth {
	return adminAuth{token: token, want: sha256.Sum256([]byte(token)), nodeClient: nodeClient}
}

// check returns how r is admitted to the admin routes (admin.AuthToken,
// ...), or an error when it is not.
func (a adminAuth) check(r *http.Request) (string, error) {
	switch {
	case a.nodeClient != nil && a.nodeClient(r.TLS):
		// Another node, authenticated by its certificate.
		return admin.AuthNodeCert, nil
	case a.token != "" && r.Method == http.MethodGet && ui.ValidSession(a.token, ui.RequestSession(r), time.Now()):
		// A signed-in status page reading.
		return admin.AuthSession, nil
	case a.token != "":
		if !a.tokenMatches(bearerToken(r.Header.Get("Authorization"))) {
			return "", fmt.Errorf("%w: missing or wrong admin token", admin.ErrUnauthorized)
		}
		return admin.AuthToken, nil
	case !isLoopback(r.RemoteAddr):
		return "", fmt.Errorf("%w: without --admin-token the admin API accepts loopback clients only", admin.ErrUnauthorized)
	}
	return admin.AuthLoopback, nil
}

// tokenMatches compares in constant time (hashing first makes the lengths equal).
func (a adminAuth) tokenMatches(got string) bool {
	sum := sha256.Sum256([]byte(got))
	return a.token != "" && subtle.ConstantTimeCompare(sum[:], a.want[:]) == 1
}

// guard admits what check admits and answers the rest with refuse.
func (a adminAuth) guard(refuse func(*gin.Context, error)) gin.HandlerFunc {
	return func(c *gin.Context) {
		auth, err := a.check(c.Request)
		if err != nil {
			refuse(c, err)
			return
		}
		caller, ctx := admin.Caller{Addr: c.Request.RemoteAddr, Auth: auth}, c.Request.Context()
		if c.GetHeader(admin.ForwardedHeader) != "" {
			ctx = admin.WithForwarded(ctx)
			// The node that forwarded the call names who made it.
			if original, ok := admin.ParseCaller(c.GetHeader(admin.CallerHeader)); ok {
				original.Via = caller.String()
				caller = original
			}
		}
		c.Request = c.Request.WithContext(admin.WithCaller(ctx, caller))
		c.Next()
	}
}

// bearerToken extracts the token of an "Authorization: Bearer <token>"
// header (the scheme is case-insensitive); "" if there is none.
func bearerToken(header string) string {
	const scheme = "bearer "
	if len(header) < len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return ""
	}
	return header[len(scheme):]
}

func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
