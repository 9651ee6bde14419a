package check

// MarshalJSON writes the attributes as the JSON object {"name": "value", ...}
// of the check API, in order; no attributes is {}, never null.
func (a Attrs) MarshalJSON() ([]byte, error) {
	dst := append(make([]byte, 0, 64), '{')
	for i := range a {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, a[i].Name)
		dst = append(dst, ':')
		dst = appendString(dst, a[i].Value)
	}
	return append(dst, '}'), nil
}

// UnmarshalJSON reads a JSON object of string values with the Decoder's
// rules (non-empty, unique names; UTF-8). Following the encoding/json
// convention, null leaves a unchanged. The result owns its memory.
func (a *Attrs) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	var d Decoder // a fresh Decoder, so nothing else ever reuses its scratch memory
	d.reset(data)
	attrs, err := d.readAttrs("")
	if err == nil {
		err = d.end()
	}
	if err != nil {
		return err
	}
	*a = attrs
	return nil
}
