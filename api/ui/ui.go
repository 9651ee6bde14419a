// Package ui is the status page served at /ui: static files embedded in the
// binary (HTML, CSS and plain JavaScript, no build step, nothing fetched
// from elsewhere) that poll the read-only admin routes, plus the sign-in
// page and the read-only session cookie a remote browser signs in with.
// The HTTP wiring and the guard live in package api.
package ui

import (
	"embed"
	"html/template"
	"io"
	"mime"
	"path"
)

//go:embed static
var static embed.FS

// File is one of the page's static files.
type File struct {
	Data        []byte
	ContentType string
}

// Files are the page's script and style sheet by name ("app.js"), served
// at /ui/<name>; the HTML pages are templates (WritePage, WriteLogin).
var Files = readFiles()

func readFiles() map[string]File {
	entries, err := static.ReadDir("static")
	if err != nil {
		panic(err)
	}
	files := map[string]File{}
	for _, e := range entries {
		if ext := path.Ext(e.Name()); ext != ".html" {
			files[e.Name()] = File{Data: mustRead("static/" + e.Name()), ContentType: mime.TypeByExtension(ext)}
		}
	}
	return files
}

// CSP is the Content-Security-Policy of every page: the page's own files
// only, no inline script, no framing.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// LoginView is what the sign-in page says.
type LoginView struct {
	// TokenSet is false when the node has no admin token: nothing to sign
	// in with, the page is served to loopback clients only.
	TokenSet bool
	// Error explains why the last attempt failed; empty on the first visit.
	Error string
}

// PageView is what the status page needs from the request.
type PageView struct {
	// SignedIn shows the sign-out button: the browser holds a session.
	SignedIn bool
}

var (
	statusPage = template.Must(template.New("page").Parse(string(mustRead("static/index.html"))))
	loginPage  = template.Must(template.New("login").Parse(string(mustRead("static/login.html"))))
)

// WritePage renders the status page.
func WritePage(w io.Writer, v PageView) error { return statusPage.Execute(w, v) }

// WriteLogin renders the sign-in page.
func WriteLogin(w io.Writer, v LoginView) error { return loginPage.Execute(w, v) }

func mustRead(name string) []byte {
	data, err := static.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return data
}
