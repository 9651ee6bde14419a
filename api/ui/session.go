package ui

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// CookieName is the status page's session cookie.
const CookieName = "sluice_ui"

// SessionTTL is how long a sign-in lasts.
const SessionTTL = 12 * time.Hour

// A session is "<expiry unix seconds>.<MAC>", the MAC an HMAC-SHA-256 of the
// expiry keyed by the admin token. It proves its holder knew the token
// without carrying it, so a leaked cookie (a log, a proxy) cannot be
// replayed as the bearer token, and the server keeps no session state:
// changing the token ends every session.

// NewSession returns a session value valid until now + SessionTTL.
func NewSession(token string, now time.Time) string {
	expiry := strconv.FormatInt(now.Add(SessionTTL).Unix(), 10)
	return expiry + "." + sessionMAC(token, expiry)
}

// ValidSession reports whether value is a session minted with token that
// has not expired at now.
func ValidSession(token, value string, now time.Time) bool {
	expiry, mac, ok := strings.Cut(value, ".")
	if !ok || token == "" {
		return false
	}
	unix, err := strconv.ParseInt(expiry, 10, 64)
	if err != nil || now.Unix() >= unix || unix > now.Add(SessionTTL).Unix() {
		return false
	}
	return hmac.Equal([]byte(mac), []byte(sessionMAC(token, expiry)))
}

// RequestSession returns the session cookie's value in r, "" if none.
func RequestSession(r *http.Request) string {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return ""
	}
	return c.Value
}

// SessionCookie is the cookie that signs a browser in with value (or out,
// with value "" and maxAge -1). HttpOnly keeps it from scripts, SameSite
// Strict from cross-site requests, Secure over HTTPS from plain HTTP.
func SessionCookie(value string, maxAge int, secure bool) *http.Cookie {
	return &http.Cookie{Name: CookieName, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure}
}

func sessionMAC(token, expiry string) string {
	m := hmac.New(sha256.New, []byte("sluice-ui-session\x00"+token))
	m.Write([]byte(expiry))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
