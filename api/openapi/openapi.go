// Package openapi holds the OpenAPI 3.1 description of the HTTP API
// (openapi.json beside this file). It is embedded in the binary and served
// at GET /openapi.json, so a client generator sees the API of the very node
// it talks to; tests check a running node's real answers against it, so
// the document cannot drift from the code.
package openapi

import _ "embed"

// Document is the OpenAPI document, JSON.
//
//go:embed openapi.json
var Document []byte
