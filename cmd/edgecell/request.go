package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/edgecell/edgecell/hmacsig"
)

const secretEnv = "EDGECELL_SECRET"

// requestFlags are the flags of `edgecell request`.
type requestFlags struct {
	keyID, secret  string
	method         string
	data, dataFile string
	headers        []string
	routingKey     string
	include        bool

	// which of them the command line set
	secretSet, methodSet, dataSet, routingKeySet bool
}

// requestCommand is the reference client of the edges' request signature
// (package hmacsig): it signs one request, sends it and prints the answer,
// the way curl would.
func (a *app) requestCommand(getenv func(string) string) *cobra.Command {
	var f requestFlags
	cmd := &cobra.Command{
		Use:   "request --key-id ID --secret S [-X METHOD] [-d BODY | --data-file F] [-H 'Name: value' ...] [--routing-key K] URL",
		Short: "Sign a request with an API key, send it to an edge and print the response",
		Long: `Request signs one HTTP request with an API key, as the edges require (headers
X-Key-Id, X-Timestamp, X-Nonce and X-Signature: the HMAC-SHA256 scheme of the
Go package github.com/edgecell/edgecell/hmacsig), sends it and prints the
response body to standard output; with -i the status line and headers come
first.

The secret is the bytes of the string given, from --secret or, better (a
command line is visible to other users), from $` + secretEnv + `. The method is
GET, or POST when a body is given. Redirects are not followed: a new target
would need a new signature.

Like curl, request exits 0 whatever the HTTP status, including an edge's 401
refusal; it exits 1 when no response came (connection refused, --timeout), and
2 for a usage error.`,
		Example: `  EDGECELL_SECRET=s3cret edgecell request --key-id k1 --routing-key tenant-1 \
    -d '{"item":"book"}' -H 'Content-Type: application/json' http://127.0.0.1:8080/v1/orders`,
		Args: exactArgs("URL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			fl := cmd.Flags()
			f.dataSet = fl.Changed("data") || fl.Changed("data-file")
			f.methodSet, f.routingKeySet, f.secretSet = fl.Changed("request"), fl.Changed("routing-key"), fl.Changed("secret")
			if !f.secretSet {
				f.secret = getenv(secretEnv)
			}
			req, err := a.newSignedRequest(cmd, &f, args[0])
			if err != nil {
				return err
			}
			return a.send(req, f.include)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.keyID, "key-id", "", "id of the API key to sign with (X-Key-Id)")
	fl.StringVar(&f.secret, "secret", "", "the key's secret; $"+secretEnv+" when not given")
	fl.StringVarP(&f.method, "request", "X", "", "HTTP method (default GET, or POST with a body)")
	fl.StringVarP(&f.data, "data", "d", "", "request body, sent as given")
	fl.StringVar(&f.dataFile, "data-file", "", "read the request body from this file (- for standard input)")
	fl.StringArrayVarP(&f.headers, "header", "H", nil, "extra header 'Name: value' (repeat for more)")
	fl.StringVar(&f.routingKey, "routing-key", "", "X-Routing-Key: the routing key that picks the cell")
	fl.BoolVarP(&f.include, "include", "i", false, "print the response status line and headers before the body")
	cmd.MarkFlagRequired("key-id")
	cmd.MarkFlagsMutuallyExclusive("data", "data-file")
	return cmd
}

// newSignedRequest builds the request the flags describe and signs it; every
// mistake is a usage error naming the flag.
func (a *app) newSignedRequest(cmd *cobra.Command, f *requestFlags, rawURL string) (*http.Request, error) {
	if f.keyID == "" {
		return nil, usagef("--key-id is empty")
	}
	if f.secret == "" {
		return nil, usagef("no secret: give --secret or set $%s to the secret of key %q", secretEnv, f.keyID)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, usagef("URL %q: %v", rawURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("URL %q: want http://HOST[:PORT]/PATH or https://...", rawURL)
	}
	body, err := a.requestBody(f)
	if err != nil {
		return nil, err
	}
	method := f.method
	switch {
	case f.methodSet && method == "":
		return nil, usagef("-X is empty")
	case !f.methodSet && f.dataSet:
		method = http.MethodPost
	case !f.methodSet:
		method = http.MethodGet
	}
	if !isToken(method) {
		return nil, usagef("-X %q: not an HTTP method", method)
	}
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(cmd.Context(), method, u.String(), r)
	if err != nil {
		return nil, usagef("%v", err)
	}
	for _, h := range f.headers {
		if err := setHeader(req, h); err != nil {
			return nil, err
		}
	}
	if f.routingKeySet {
		if req.Header.Get(hmacsig.HeaderRoutingKey) != "" {
			return nil, usagef("both --routing-key and -H %s given; use one", hmacsig.HeaderRoutingKey)
		}
		req.Header.Set(hmacsig.HeaderRoutingKey, f.routingKey)
	}
	s := &hmacsig.Signer{KeyID: f.keyID, Secret: []byte(f.secret), Now: a.now}
	if err := s.Sign(req); err != nil {
		return nil, usageError{err}
	}
	return req, nil
}

// requestBody is the body of -d or --data-file, or nil for none.
func (a *app) requestBody(f *requestFlags) ([]byte, error) {
	switch {
	case f.dataFile == "-":
		b, err := io.ReadAll(a.in)
		if err != nil {
			return nil, usagef("--data-file -: read standard input: %v", err)
		}
		return b, nil
	case f.dataFile != "":
		b, err := os.ReadFile(f.dataFile)
		if err != nil {
			return nil, usagef("--data-file: %v", err)
		}
		return b, nil
	case f.dataSet:
		return []byte(f.data), nil
	}
	return nil, nil
}

// setHeader adds one -H 'Name: value' to req. The signature headers are the
// signer's, and Host sets the request's host.
func setHeader(req *http.Request, h string) error {
	name, value, ok := strings.Cut(h, ":")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	if !ok || !isToken(name) {
		return usagef("-H %q: want 'Name: value'", h)
	}
	for _, c := range value {
		if c < ' ' && c != '\t' || c == 0x7f {
			return usagef("-H %q: control character in the value", h)
		}
	}
	switch http.CanonicalHeaderKey(name) {
	case hmacsig.HeaderKeyID, hmacsig.HeaderTimestamp, hmacsig.HeaderNonce, hmacsig.HeaderSignature:
		return usagef("-H %q: %s is set by the signature", h, http.CanonicalHeaderKey(name))
	case "Host":
		req.Host = value
		return nil
	}
	req.Header.Add(name, value)
	return nil
}

// isToken reports whether s is an RFC 9110 token: a valid method or header
// name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// send sends req and prints the response: any HTTP status is a success.
func (a *app) send(req *http.Request, include bool) error {
	client := &http.Client{
		Timeout:       a.timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			if ue.Timeout() {
				return fmt.Errorf("%s %s: no response within %s (raise --timeout?)", req.Method, req.URL, a.timeout)
			}
			err = ue.Err
		}
		return fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	if include {
		fmt.Fprintf(a.out, "%s %s\r\n", resp.Proto, resp.Status)
		if err := resp.Header.Write(a.out); err != nil {
			return err
		}
		io.WriteString(a.out, "\r\n")
	}
	if _, err := io.Copy(a.out, resp.Body); err != nil {
		return fmt.Errorf("%s %s: reading the response body: %w", req.Method, req.URL, err)
	}
	return nil
}
