package nvcf

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/e2e/nvcfsim"
	"function/shared/testenv"
)

// secretVolume lays out a credential as a Kubernetes secret volume does:
// the file is a symlink into a directory per version, and an update swaps
// the link. The versions share one length and one modification time, as
// two tokens written in the same second do, so only which file the name
// leads to tells them apart. swapTo(i) makes the swap to versions[i] as
// the kubelet makes it: a new link renamed over the old.
func secretVolume(t *testing.T, name string, versions ...string) (path string, swapTo func(i int)) {
	t.Helper()
	dir := t.TempDir()
	at := time.Now().Add(-time.Hour).Truncate(time.Second)
	for i, v := range versions {
		require.Len(t, v, len(versions[0]), "versions of one length")
		sub := filepath.Join(dir, fmt.Sprintf("v%d", i))
		require.NoError(t, os.Mkdir(sub, 0o755))
		writeFile(t, filepath.Join(sub, name), v, at)
	}
	path = filepath.Join(dir, name)
	link := func(i int) {
		next := path + ".new"
		require.NoError(t, os.Symlink(filepath.Join(fmt.Sprintf("v%d", i), name), next))
		require.NoError(t, os.Rename(next, path))
	}
	link(0)
	return path, link
}

// A token rotated by a symlink swap is sent at the first attempt of the
// next call. The rotation revokes the old token as it lands, so a client
// that sends the old one is refused; the file's length and modification
// time did not change, so a client watching only those never reads it
// again on its own.
func TestTokenFileSwappedBySymlinkIsSentAtTheNextCall(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			sim := startSim(t)
			path, swapTo := secretVolume(t, "token", "token-AAAA", "token-BBBB")
			sim.SetAcceptedTokens("token-AAAA")
			c, _ := newClient(t, tr, sim, func(c *Config) { c.TokenFile = path })
			_, err := autoscale(c, 3)
			require.NoError(t, err)

			sim.SetAcceptedTokens("token-BBBB")
			swapTo(1)
			res, err := autoscale(c, 4)
			require.NoError(t, err)
			require.Equal(t, 1, res.Attempts, "the rotated token is sent at once, not after a refusal")
			require.Equal(t, 2, sim.Calls(fid, vid))
		})
	}
}

// A client secret rotated by a symlink swap drops the token fetched with
// the old secret, still cached and unexpired: the next call fetches a new
// token with the new secret and sends that at its first attempt. The
// simulator's token service knows only the new secret from the rotation
// on, and its API takes only the token it issues for it.
func TestClientSecretSwappedBySymlinkFetchesANewToken(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			sim := startSim(t)
			sim.SetOAuthClient("autoscaler", "secret-AAAA", "jwt-1")
			path, swapTo := secretVolume(t, "client-secret", "secret-AAAA", "secret-BBBB")
			c, _ := newClient(t, tr, sim, func(c *Config) {
				c.OAuthTokenURL = sim.HTTPURL() + nvcfsim.OAuthTokenPath
				c.OAuthClientID = "autoscaler"
				c.OAuthClientSecretFile = path
			})
			for n := 3; n <= 4; n++ {
				_, err := autoscale(c, n)
				require.NoError(t, err)
			}
			require.Equal(t, 1, sim.TokenFetches(), "the token is cached while the secret stands")

			sim.SetOAuthClient("autoscaler", "secret-BBBB", "jwt-2")
			swapTo(1)
			res, err := autoscale(c, 5)
			require.NoError(t, err)
			require.Equal(t, 1, sim.TokenFetches(), "a token is fetched with the rotated secret")
			require.Equal(t, 1, res.Attempts, "the new token is sent at once, not after a refusal")
		})
	}
}

// A credential file caught empty or gone while it is rewritten must not
// fail calls the value read before would pass: that value is still used,
// one warning per change of the file says why, and the rewrite is taken
// once it is done, with one line. No line carries the credential.
func TestCredentialFileHalfRewrittenKeepsTheLastGoodOne(t *testing.T) {
	for _, tc := range []struct {
		name, setting string
		// use points c at the credential file; accept makes the
		// simulator take value and only value.
		use    func(c *Config, sim *nvcfsim.Server, path string)
		accept func(sim *nvcfsim.Server, value string)
	}{
		{
			name: "token", setting: "NVCF_TOKEN_FILE",
			use:    func(c *Config, _ *nvcfsim.Server, path string) { c.TokenFile = path },
			accept: func(sim *nvcfsim.Server, token string) { sim.SetAcceptedTokens(token) },
		},
		{
			name: "client secret", setting: "NVCF_OAUTH_CLIENT_SECRET_FILE",
			use: func(c *Config, sim *nvcfsim.Server, path string) {
				c.OAuthTokenURL = sim.HTTPURL() + nvcfsim.OAuthTokenPath
				c.OAuthClientID = "autoscaler"
				c.OAuthClientSecretFile = path
			},
			accept: func(sim *nvcfsim.Server, secret string) {
				sim.SetOAuthClient("autoscaler", secret, "jwt-"+strings.TrimPrefix(secret, "s3cret-"))
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := testenv.CaptureLogs(t)
			sim := startSim(t)
			path := filepath.Join(t.TempDir(), "credential")
			t0 := time.Now().Add(-time.Hour)
			writes := 0
			write := func(v string) {
				// A new mtime for every write, whatever the file
				// system's timestamp resolution.
				writes++
				writeFile(t, path, v, t0.Add(time.Duration(writes)*time.Second))
			}
			write("s3cret-one")
			tc.accept(sim, "s3cret-one")
			c, _ := newClient(t, TransportHTTP, sim, func(c *Config) {
				tc.use(c, sim, path)
				c.Logger = slog.Default()
			})
			calls := func(why string) {
				t.Helper()
				for i := 0; i < 2; i++ {
					res, err := autoscale(c, 3)
					require.NoError(t, err, why)
					require.Equal(t, 1, res.Attempts, why)
				}
			}
			calls("the first read")
			require.Empty(t, lines(), "reading the file at start is not a rotation")

			var all []map[string]any
			logged := func(level, why string) {
				t.Helper()
				got := lines()
				all = append(all, got...)
				require.Len(t, got, 1, "one line per change, not per call: %v", got)
				require.Equal(t, level, got[0]["level"])
				require.Equal(t, tc.setting, got[0]["credential_setting"])
				require.Equal(t, path, got[0]["credential_file"])
				if why != "" {
					require.Contains(t, got[0]["error"], why)
				}
			}
			write("")
			calls("an empty rewrite keeps the value read before")
			logged("WARN", "empty")

			require.NoError(t, os.Remove(path))
			calls("a file gone during a swap keeps the value read before")
			logged("WARN", "no such file")

			write("s3cret-two")
			tc.accept(sim, "s3cret-two")
			calls("the completed rewrite is used")
			logged("INFO", "")
			require.NotContains(t, fmt.Sprint(all), "s3cret")
		})
	}
}

// The first read is at New: a credential file missing or empty fails it
// with the setting named, instead of every call after a start that looked
// fine.
func TestCredentialFileMissingOrEmptyFailsNew(t *testing.T) {
	dir := t.TempDir()
	absent := filepath.Join(dir, "absent")
	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, " ", time.Now())
	oauth := func(path string) func(*Config) {
		return func(c *Config) {
			c.OAuthTokenURL, c.OAuthClientID, c.OAuthClientSecretFile = "http://127.0.0.1:9/token", "autoscaler", path
		}
	}
	for _, tc := range []struct {
		name      string
		use       func(*Config)
		want, why string
	}{
		{"token file missing", func(c *Config) { c.TokenFile = absent }, `NVCF_TOKEN_FILE="` + absent + `"`, "no such file"},
		{"token file empty", func(c *Config) { c.TokenFile = empty }, `NVCF_TOKEN_FILE="` + empty + `"`, "empty"},
		{"client secret file missing", oauth(absent), `NVCF_OAUTH_CLIENT_SECRET_FILE="` + absent + `"`, "no such file"},
		{"client secret file empty", oauth(empty), `NVCF_OAUTH_CLIENT_SECRET_FILE="` + empty + `"`, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{BaseURL: "http://127.0.0.1:9", Logger: slog.New(slog.DiscardHandler)}
			tc.use(&cfg)
			_, err := New(cfg)
			require.ErrorContains(t, err, tc.want)
			require.ErrorContains(t, err, tc.why)
		})
	}
}
