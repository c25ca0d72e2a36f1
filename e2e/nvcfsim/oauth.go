package nvcfsim

import (
	"net/http"
	"slices"
	"strings"
)

// OAuthTokenPath is where the HTTP listener serves the OAuth2
// client-credentials token endpoint (see SetOAuthClient).
const OAuthTokenPath = "/oauth2/token"

// oauthScope is the scope NVCF's token service grants the autoscaler.
const oauthScope = "autoscaler:auth"

// oauthClient is the one client the token endpoint knows.
type oauthClient struct {
	id, secret, token string
	fetches           int
}

// SetOAuthClient makes the token endpoint (HTTPURL()+OAuthTokenPath) issue
// token to a client that authenticates as id with secret and asks for the
// autoscaler:auth scope, as a self-hosted NVCF control plane's token
// service does, and makes the API accept token. The token endpoint
// answers 404 until this is called.
func (s *Server) SetOAuthClient(id, secret, token string) {
	s.mu.Lock()
	s.oauth = &oauthClient{id: id, secret: secret, token: token}
	s.mu.Unlock()
	s.SetAcceptedTokens(token)
}

// TokenFetches is how many tokens the token endpoint has issued.
func (s *Server) TokenFetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.oauth == nil {
		return 0
	}
	return s.oauth.fetches
}

// tokenError is RFC 6749's error answer.
type tokenError struct {
	Error string `json:"error"`
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.oauth == nil {
		http.NotFound(w, r)
		return
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, tokenError{Error: "invalid_request"})
		return
	}
	// RFC 6749 lets a client authenticate with Basic or in the form;
	// golang.org/x/oauth2 tries both.
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	switch {
	case r.PostForm.Get("grant_type") != "client_credentials":
		writeJSON(w, http.StatusBadRequest, tokenError{Error: "unsupported_grant_type"})
	case id != s.oauth.id || secret != s.oauth.secret:
		writeJSON(w, http.StatusUnauthorized, tokenError{Error: "invalid_client"})
	case !slices.Contains(strings.Fields(r.PostForm.Get("scope")), oauthScope):
		writeJSON(w, http.StatusBadRequest, tokenError{Error: "invalid_scope"})
	default:
		s.oauth.fetches++
		writeJSON(w, http.StatusOK, map[string]any{"access_token": s.oauth.token, "token_type": "Bearer", "expires_in": 3600})
	}
}
