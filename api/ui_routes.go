package api

import (
	"bytes"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/sluicehq/sluice/api/ui"
)

// registerUIRoutes serves the status page (api/ui). The page is behind the
// admin guard, and a refused browser gets the sign-in page instead; its
// script and style sheet are served to anyone, since they hold no data (the
// data comes from the guarded admin routes).
func registerUIRoutes(r gin.IRouter, auth adminAuth) {
	h := uiHandlers{auth}
	r.GET("/ui", auth.guard(h.refuse), h.page)
	for name, f := range ui.Files {
		r.GET("/ui/"+name, serveFile(f))
	}
	r.POST("/ui/login", h.login)
	r.POST("/ui/logout", h.logout)
}

type uiHandlers struct{ auth adminAuth }

func (h uiHandlers) page(c *gin.Context) {
	signedIn := h.auth.token != "" && ui.ValidSession(h.auth.token, ui.RequestSession(c.Request), time.Now())
	h.render(c, http.StatusOK, func(w *bytes.Buffer) error { return ui.WritePage(w, ui.PageView{SignedIn: signedIn}) })
}

func serveFile(f ui.File) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Header("X-Content-Type-Options", "nosniff")
		c.Header("Cache-Control", "no-cache")
		c.Data(http.StatusOK, f.ContentType, f.Data)
	}
}

// refuse answers a browser the guard refused with the sign-in page.
func (h uiHandlers) refuse(c *gin.Context, _ error) {
	h.writeLogin(c, "")
	c.Abort()
}

// login checks the token a sign-in form posted and, if it is the admin
// token, sets the read-only session cookie and sends the browser to the page.
func (h uiHandlers) login(c *gin.Context) {
	token := c.PostForm("token")
	if !h.auth.tokenMatches(token) {
		h.writeLogin(c, "That is not this node's admin token.")
		return
	}
	secure := c.Request.TLS != nil
	http.SetCookie(c.Writer, ui.SessionCookie(ui.NewSession(token, time.Now()), int(ui.SessionTTL/time.Second), secure))
	c.Redirect(http.StatusSeeOther, "/ui")
}

// logout clears the session cookie.
func (h uiHandlers) logout(c *gin.Context) {
	http.SetCookie(c.Writer, ui.SessionCookie("", -1, c.Request.TLS != nil))
	c.Redirect(http.StatusSeeOther, "/ui")
}

// writeLogin answers 401 with the sign-in page saying problem.
func (h uiHandlers) writeLogin(c *gin.Context, problem string) {
	view := ui.LoginView{TokenSet: h.auth.token != "", Error: problem}
	h.render(c, http.StatusUnauthorized, func(w *bytes.Buffer) error { return ui.WriteLogin(w, view) })
}

// render answers status with the page write makes, with headers that keep
// it from being framed, cached, or made to load anything but its own files.
func (h uiHandlers) render(c *gin.Context, status int, write func(*bytes.Buffer) error) {
	var page bytes.Buffer
	if err := write(&page); err != nil {
		writeError(c, err)
		return
	}
	c.Header("Content-Security-Policy", ui.CSP)
	c.Header("X-Content-Type-Options", "nosniff")
	c.Header("Referrer-Policy", "no-referrer")
	c.Header("Cache-Control", "no-store")
	c.Data(status, "text/html; charset=utf-8", page.Bytes())
}
