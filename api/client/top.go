package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/sluicehq/sluice/api/admin"
	"github.com/sluicehq/sluice/api/top"
)

// Top returns each rule's top keys over the cluster (GET /v1/top); zero
// fields of q take the node's defaults.
func (c *Client) Top(ctx context.Context, q top.Query) (admin.Top, error) {
	v := url.Values{}
	for name, value := range map[string]string{"rule": q.Rule, "window": q.Window, "by": q.By} {
		if value != "" {
			v.Set(name, value)
		}
	}
	if q.K > 0 {
		v.Set("k", strconv.Itoa(q.K))
	}
	if q.Local {
		v.Set("scope", "local")
	}
	var t admin.Top
	err := c.adminCall(ctx, http.MethodGet, "/v1/top?"+v.Encode(), nil, &t)
	return t, err
}
