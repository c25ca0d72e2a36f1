package watchfile_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"function/shared/watchfile"
)

// base is the modification time every file starts with. Each test sets
// file times itself, with os.Chtimes, so that whether a rewrite is seen
// never rests on the clock ticking between two writes.
var base = time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)

// write writes contents to path in place (the same file, truncated, when
// it exists, as a shell's `>` rewrites it) and sets its modification time
// to at.
func write(t *testing.T, path, contents string, at time.Time) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(contents), 0o600))
	require.NoError(t, os.Chtimes(path, at, at))
}

// replace puts a new file with contents at path by a rename, as tools
// that write atomically do: the name leads to another file, and a reader
// sees the old contents or the new, never half of them.
func replace(t *testing.T, path, contents string, at time.Time) {
	t.Helper()
	tmp := path + ".tmp"
	write(t, tmp, contents, at)
	require.NoError(t, os.Rename(tmp, path))
}

// watch is a Value under test and what it did: how often it parsed, and
// what it reported.
type watch struct {
	*watchfile.Value[string]
	parses   atomic.Int64
	mu       sync.Mutex
	reloaded []string
	failed   []failure
}

// failure is one Failed call.
type failure struct {
	last string
	err  error
}

// newWatch watches files, parsing them into their contents joined by
// "|", in the order Parse gets them. A file holding "bad" fails the
// parse, as a certificate cut in half would. spec sets anything else,
// such as WaitWhileUnreachable.
func newWatch(t *testing.T, files []watchfile.File, spec func(*watchfile.Spec[string])) (*watch, error) {
	t.Helper()
	w := &watch{}
	s := watchfile.Spec[string]{
		Files: files,
		Parse: func(contents [][]byte) (string, error) {
			w.parses.Add(1)
			parts := make([]string, len(contents))
			for i, c := range contents {
				if string(c) == "bad" {
					return "", errors.New("not a value")
				}
				parts[i] = string(c)
			}
			return strings.Join(parts, "|"), nil
		},
		Reloaded: func(now string) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.reloaded = append(w.reloaded, now)
		},
		Failed: func(last string, err error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.failed = append(w.failed, failure{last, err})
		},
	}
	if spec != nil {
		spec(&s)
	}
	v, err := watchfile.New(s)
	if err != nil {
		return nil, err
	}
	w.Value = v
	return w, nil
}

// mustWatch is newWatch for a test whose files are good at the start.
func mustWatch(t *testing.T, files []watchfile.File, spec func(*watchfile.Spec[string])) *watch {
	t.Helper()
	w, err := newWatch(t, files, spec)
	require.NoError(t, err)
	return w
}

// reports is what w reported so far.
func (w *watch) reports() (reloaded []string, failed []failure) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.reloaded...), append([]failure(nil), w.failed...)
}

// use calls Current n times, as n handshakes or queries would, and
// requires each to return want.
func (w *watch) use(t *testing.T, n int, want string) {
	t.Helper()
	for range n {
		require.Equal(t, want, w.Current())
	}
}

// tokenFile is a file in a fresh directory holding contents, with the
// base time.
func tokenFile(t *testing.T, contents string) watchfile.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	write(t, path, contents, base)
	return watchfile.File{Path: path, Setting: "TSDB_TOKEN_FILE", What: "token file"}
}

func TestNewReadsOnceAndReportsNothing(t *testing.T) {
	w := mustWatch(t, []watchfile.File{tokenFile(t, "token-A")}, nil)
	require.EqualValues(t, 1, w.parses.Load())
	reloaded, failed := w.reports()
	require.Empty(t, reloaded, "the first read is the start, not a reload")
	require.Empty(t, failed)
	require.Equal(t, "token-A", w.Current())
}

// A wrong setting fails at start, with the setting, the path and what the
// file is for: what an operator needs to fix it. The path is quoted once:
// the *PathError's own copy of it is dropped.
func TestNewWithAMissingFileNamesTheSettingAndPath(t *testing.T) {
	f := watchfile.File{Path: filepath.Join(t.TempDir(), "nowhere"), Setting: "TSDB_TOKEN_FILE", What: "token file"}
	w, err := newWatch(t, []watchfile.File{f}, nil)
	require.Error(t, err)
	require.Nil(t, w)
	require.ErrorIs(t, err, fs.ErrNotExist, "the cause stays inspectable")
	require.Contains(t, err.Error(), fmt.Sprintf("TSDB_TOKEN_FILE=%q", f.Path))
	require.Contains(t, err.Error(), "token file")
	require.Equal(t, 1, strings.Count(err.Error(), f.Path), "the path once: %v", err)
}

// A file that stats but cannot be read (a directory where the secret
// should be: the volume's mount point set instead of a file in it) fails
// New naming the setting.
func TestNewWithAnUnreadableFileNamesTheSetting(t *testing.T) {
	f := watchfile.File{Path: t.TempDir(), Setting: "NVCF_TOKEN_FILE", What: "token file"}
	_, err := newWatch(t, []watchfile.File{f}, nil)
	require.Error(t, err)
	require.Contains(t, err.Error(), fmt.Sprintf("NVCF_TOKEN_FILE=%q: cannot read the token file", f.Path))
}

func TestNewFailsWithTheParseError(t *testing.T) {
	_, err := newWatch(t, []watchfile.File{tokenFile(t, "bad")}, nil)
	require.EqualError(t, err, "not a value")
}

// A use costs a stat, not a read: an unchanged file is not parsed again
// however often the value is used.
func TestUnchangedFileIsNotReadAgain(t *testing.T) {
	w := mustWatch(t, []watchfile.File{tokenFile(t, "token-A")}, nil)
	w.use(t, 100, "token-A")
	require.EqualValues(t, 1, w.parses.Load())
	reloaded, failed := w.reports()
	require.Empty(t, reloaded)
	require.Empty(t, failed)
}

// The same file rewritten in place to another size, its time kept: the
// size alone tells the rewrite.
func TestRewriteToAnotherSizeIsReadAndReportedOnce(t *testing.T) {
	f := tokenFile(t, "token-A")
	w := mustWatch(t, []watchfile.File{f}, nil)
	write(t, f.Path, "token-BB", base)
	w.use(t, 50, "token-BB")
	require.EqualValues(t, 2, w.parses.Load())
	reloaded, failed := w.reports()
	require.Equal(t, []string{"token-BB"}, reloaded, "once per change, not once per use")
	require.Empty(t, failed)
}

// The same file rewritten in place at the same size, a second later: the
// modification time alone tells the rewrite.
func TestRewriteAtAnotherTimeIsReadAndReportedOnce(t *testing.T) {
	f := tokenFile(t, "token-A")
	w := mustWatch(t, []watchfile.File{f}, nil)
	write(t, f.Path, "token-B", base.Add(time.Second))
	w.use(t, 50, "token-B")
	require.EqualValues(t, 2, w.parses.Load())
	reloaded, failed := w.reports()
	require.Equal(t, []string{"token-B"}, reloaded)
	require.Empty(t, failed)
}

// secretVolume lays out files as a Kubernetes secret volume does: each
// name is a symlink into ..data, itself a symlink to a directory per
// version, and an update renames a new ..data over the old. All versions
// have one size and one modification time, as two tokens of one length
// written in the same second do, so only which file a name leads to
// tells them apart. swapTo(i) makes the swap to the i-th version.
func secretVolume(t *testing.T, name string, versions ...string) (path string, swapTo func(i int)) {
	t.Helper()
	dir := t.TempDir()
	for i, v := range versions {
		require.Len(t, v, len(versions[0]), "versions of one size")
		sub := filepath.Join(dir, fmt.Sprintf("..version-%d", i))
		require.NoError(t, os.Mkdir(sub, 0o755))
		write(t, filepath.Join(sub, name), v, base)
	}
	swapTo = func(i int) {
		next := filepath.Join(dir, "..data_tmp")
		require.NoError(t, os.Symlink(fmt.Sprintf("..version-%d", i), next))
		require.NoError(t, os.Rename(next, filepath.Join(dir, "..data")))
	}
	swapTo(0)
	path = filepath.Join(dir, name)
	require.NoError(t, os.Symlink(filepath.Join("..data", name), path))
	return path, swapTo
}

func TestSymlinkSwapKeepingSizeAndTimeIsSeen(t *testing.T) {
	path, swapTo := secretVolume(t, "token", "token-A", "token-B")
	w := mustWatch(t, []watchfile.File{{Path: path, Setting: "NVCF_TOKEN_FILE", What: "token file"}}, nil)
	swapTo(1)
	w.use(t, 50, "token-B")
	swapTo(0)
	w.use(t, 50, "token-A")
	require.EqualValues(t, 3, w.parses.Load())
	reloaded, failed := w.reports()
	require.Equal(t, []string{"token-B", "token-A"}, reloaded)
	require.Empty(t, failed)
}

// A rewrite that does not parse (caught half done, or simply wrong) keeps
// the value in use, is reported once with that value, and is not read
// again at each use: the next read is for the next change, and a good
// one loads.
func TestBrokenRewriteKeepsTheLastGoodValueAndFailsOnce(t *testing.T) {
	f := tokenFile(t, "token-A")
	w := mustWatch(t, []watchfile.File{f}, nil)
	write(t, f.Path, "bad", base.Add(time.Second))
	w.use(t, 50, "token-A")
	require.EqualValues(t, 2, w.parses.Load(), "read once for the change, not at each use")
	reloaded, failed := w.reports()
	require.Empty(t, reloaded)
	require.Len(t, failed, 1)
	require.Equal(t, "token-A", failed[0].last, "Failed gets the value still in use")
	require.EqualError(t, failed[0].err, "not a value")

	write(t, f.Path, "token-B", base.Add(2*time.Second))
	w.use(t, 50, "token-B")
	require.EqualValues(t, 3, w.parses.Load())
	reloaded, failed = w.reports()
	require.Equal(t, []string{"token-B"}, reloaded)
	require.Len(t, failed, 1)
}

// Two broken rewrites in a row are two changes, each reported once, and
// both report the value read before the first: a failed read never
// replaces it.
func TestBrokenRewritesInARowReportTheValueStillInUse(t *testing.T) {
	f := tokenFile(t, "token-A")
	w := mustWatch(t, []watchfile.File{f}, nil)
	write(t, f.Path, "bad", base.Add(time.Second))
	w.use(t, 3, "token-A")
	require.NoError(t, os.Remove(f.Path))
	require.NoError(t, os.Mkdir(f.Path, 0o755))
	w.use(t, 3, "token-A")
	_, failed := w.reports()
	require.Len(t, failed, 2)
	require.Equal(t, "token-A", failed[0].last)
	require.Equal(t, "token-A", failed[1].last)
	require.Contains(t, failed[1].err.Error(), fmt.Sprintf("TSDB_TOKEN_FILE=%q: cannot read the token file", f.Path))
}

func TestNonEmptyTextTrimsWhiteSpace(t *testing.T) {
	f := tokenFile(t, "\n  token-A \t\n")
	v, err := watchfile.New(watchfile.Spec[string]{
		Files:    []watchfile.File{f},
		Parse:    watchfile.NonEmptyText(f),
		Reloaded: func(string) { t.Error("Reloaded") },
		Failed:   func(string, error) { t.Error("Failed") },
	})
	require.NoError(t, err)
	require.Equal(t, "token-A", v.Current())
}

// A file of white space only is an operator's empty secret or a rewrite
// caught between truncating and writing; either way it is an error naming
// the file, never an empty token sent as a credential.
func TestNonEmptyTextRefusesAnEmptyFile(t *testing.T) {
	f := watchfile.File{Path: "/run/secrets/token", Setting: "NVCF_TOKEN_FILE", What: "token file"}
	for _, contents := range []string{"", " \n\t\r\n"} {
		v, err := watchfile.NonEmptyText(f)([][]byte{[]byte(contents)})
		require.Empty(t, v)
		require.EqualError(t, err, `NVCF_TOKEN_FILE="/run/secrets/token": the token file is empty`)
	}
}

// A token file truncated for a rewrite, and read before the new token is
// in, keeps the token read before.
func TestEmptiedTokenFileKeepsTheLastToken(t *testing.T) {
	f := tokenFile(t, "token-A")
	var failed []error
	v, err := watchfile.New(watchfile.Spec[string]{
		Files:    []watchfile.File{f},
		Parse:    watchfile.NonEmptyText(f),
		Reloaded: func(string) { t.Error("Reloaded") },
		Failed:   func(_ string, err error) { failed = append(failed, err) },
	})
	require.NoError(t, err)
	write(t, f.Path, "\n", base.Add(time.Second))
	for range 10 {
		require.Equal(t, "token-A", v.Current())
	}
	require.Len(t, failed, 1)
	require.ErrorContains(t, failed[0], "the token file is empty")
}

// certAndKey is a client certificate and its key in one directory.
func certAndKey(t *testing.T, cert, key string) []watchfile.File {
	t.Helper()
	dir := t.TempDir()
	files := []watchfile.File{
		{Path: filepath.Join(dir, "tls.crt"), Setting: "TSDB_CERT_FILE", What: "client certificate"},
		{Path: filepath.Join(dir, "tls.key"), Setting: "TSDB_KEY_FILE", What: "client key"},
	}
	write(t, files[0].Path, cert, base)
	write(t, files[1].Path, key, base)
	return files
}

// A certificate and its key are read together, whichever of them changed,
// and Parse gets them in the order of Files.
func TestAChangeToAnyFileReadsThemAllInOrder(t *testing.T) {
	files := certAndKey(t, "cert-1", "key-1")
	w := mustWatch(t, files, nil)
	require.Equal(t, "cert-1|key-1", w.Current())

	write(t, files[1].Path, "key-2", base.Add(time.Second))
	w.use(t, 10, "cert-1|key-2")
	write(t, files[0].Path, "cert-3", base.Add(2*time.Second))
	w.use(t, 10, "cert-3|key-2")

	require.EqualValues(t, 3, w.parses.Load())
	reloaded, failed := w.reports()
	require.Equal(t, []string{"cert-1|key-2", "cert-3|key-2"}, reloaded)
	require.Empty(t, failed)
}

// A file gone, without WaitWhileUnreachable, is a change like any other:
// reported once as a failure naming the file, the last value kept. Back,
// it is a change again, and loads.
func TestFileGoneIsReportedOnceAndLoadsWhenBack(t *testing.T) {
	files := certAndKey(t, "cert-1", "key-1")
	w := mustWatch(t, files, nil)
	require.NoError(t, os.Remove(files[1].Path))
	w.use(t, 50, "cert-1|key-1")
	require.EqualValues(t, 1, w.parses.Load(), "nothing to parse without the key")
	reloaded, failed := w.reports()
	require.Empty(t, reloaded)
	require.Len(t, failed, 1, "once per change, not once per use")
	require.Equal(t, "cert-1|key-1", failed[0].last)
	require.ErrorIs(t, failed[0].err, fs.ErrNotExist)
	require.Contains(t, failed[0].err.Error(), fmt.Sprintf("TSDB_KEY_FILE=%q: cannot read the client key", files[1].Path))

	// Back as it was: what was remembered is that it was gone.
	write(t, files[1].Path, "key-1", base)
	w.use(t, 50, "cert-1|key-1")
	require.EqualValues(t, 2, w.parses.Load())
	reloaded, failed = w.reports()
	require.Equal(t, []string{"cert-1|key-1"}, reloaded)
	require.Len(t, failed, 1)
}

// The error for files out of reach names the first of them in Files
// order, and it is the one out of reach that is named rather than
// another that stats but cannot be read: every file is looked at before
// any is read, so a file gone during a swap is not mistaken for its
// neighbour's fault.
func TestTheFileOutOfReachIsNamed(t *testing.T) {
	files := certAndKey(t, "cert-1", "key-1")
	w := mustWatch(t, files, nil)
	require.NoError(t, os.Remove(files[0].Path))
	require.NoError(t, os.Mkdir(files[0].Path, 0o755))
	require.NoError(t, os.Remove(files[1].Path))
	w.use(t, 3, "cert-1|key-1")
	_, failed := w.reports()
	require.Len(t, failed, 1)
	require.ErrorIs(t, failed[0].err, fs.ErrNotExist)
	require.Contains(t, failed[0].err.Error(), "TSDB_KEY_FILE=")
	require.NotContains(t, failed[0].err.Error(), "TSDB_CERT_FILE=")
}

// With WaitWhileUnreachable, a file out of reach is a renewal under way:
// the last value stays, nothing is read and nothing said, even when the
// other file of the pair already changed, since half a pair cannot load.
// Once both stat and one changed, they are read.
func TestWaitWhileUnreachableIsSilentAndLoadsOnceBackAndChanged(t *testing.T) {
	files := certAndKey(t, "cert-1", "key-1")
	w := mustWatch(t, files, func(s *watchfile.Spec[string]) { s.WaitWhileUnreachable = true })
	write(t, files[0].Path, "cert-2", base.Add(time.Second))
	require.NoError(t, os.Remove(files[1].Path))
	w.use(t, 50, "cert-1|key-1")
	require.EqualValues(t, 1, w.parses.Load())
	reloaded, failed := w.reports()
	require.Empty(t, reloaded)
	require.Empty(t, failed)

	write(t, files[1].Path, "key-2", base.Add(time.Second))
	w.use(t, 50, "cert-2|key-2")
	require.EqualValues(t, 2, w.parses.Load())
	reloaded, failed = w.reports()
	require.Equal(t, []string{"cert-2|key-2"}, reloaded)
	require.Empty(t, failed)
}

// A file that was out of reach for a while and is back unchanged (moved
// away and back: the same file, size and time) is not read: waiting did
// not forget what was read last.
func TestWaitWhileUnreachableBackUnchangedIsNotRead(t *testing.T) {
	f := tokenFile(t, "token-A")
	w := mustWatch(t, []watchfile.File{f}, func(s *watchfile.Spec[string]) { s.WaitWhileUnreachable = true })
	require.NoError(t, os.Rename(f.Path, f.Path+".away"))
	w.use(t, 10, "token-A")
	require.NoError(t, os.Rename(f.Path+".away", f.Path))
	w.use(t, 10, "token-A")
	require.EqualValues(t, 1, w.parses.Load())
	reloaded, failed := w.reports()
	require.Empty(t, reloaded)
	require.Empty(t, failed)
}

// Every way a read after the first can fail yields an error that names
// the setting, and none of them quotes the credential read before, which
// Failed gets alongside: errors end up in logs.
func TestErrorsNeverQuoteTheContents(t *testing.T) {
	const secret = "nvapi-Zq8sK2mXv9LpR4tW7yB3nC6dF1gH5jA0"
	f := tokenFile(t, secret+"\n")
	var errs []error
	v, err := watchfile.New(watchfile.Spec[string]{
		Files:    []watchfile.File{f},
		Parse:    watchfile.NonEmptyText(f),
		Reloaded: func(string) { t.Error("Reloaded") },
		Failed: func(last string, err error) {
			require.Equal(t, secret, last)
			errs = append(errs, err)
		},
	})
	require.NoError(t, err)

	// Emptied, replaced by a directory, gone.
	write(t, f.Path, " \n", base.Add(time.Second))
	require.Equal(t, secret, v.Current())
	require.NoError(t, os.Remove(f.Path))
	require.NoError(t, os.Mkdir(f.Path, 0o755))
	require.Equal(t, secret, v.Current())
	require.NoError(t, os.Remove(f.Path))
	require.Equal(t, secret, v.Current())

	require.Len(t, errs, 3)
	for _, err := range errs {
		require.Contains(t, err.Error(), "TSDB_TOKEN_FILE=")
		require.NotContains(t, err.Error(), secret[:12], "a credential in an error: %v", err)
	}
}

// Many uses at once while the file is replaced over and over: no use
// ever gets the zero value or a value that was never written, the reads
// after the first are each reported once, there are no more of them than
// there were changes (however many uses), they never go back to an older
// version, and once the writes stop the last version is the one in use.
// A version may be reported twice, and only then: when it lands between
// a read's stat and its read, that read gets it under the stamp of the
// version before, and the next use, seeing the newer stamp, reads it
// again. That is a read per change seen, and the price of never missing
// a rewrite made while the file is read. Run with -race.
func TestConcurrentUsesReportEachChangeAtMostOnce(t *testing.T) {
	f := tokenFile(t, "token-000")
	v := mustWatch(t, []watchfile.File{f}, nil)
	const versions, users = 60, 8
	written := map[string]bool{"token-000": true}
	for i := 1; i <= versions; i++ {
		written[fmt.Sprintf("token-%03d", i)] = true
	}

	var done atomic.Bool
	var wg sync.WaitGroup
	seen := make([]map[string]bool, users)
	for u := range users {
		seen[u] = map[string]bool{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				seen[u][v.Current()] = true
			}
		}()
	}
	for i := 1; i <= versions; i++ {
		// A distinct time for each version: a file name's inode may be
		// reused by a later version, and the time still tells them
		// apart.
		replace(t, f.Path, fmt.Sprintf("token-%03d", i), base.Add(time.Duration(i)*time.Second))
	}
	done.Store(true)
	wg.Wait()

	last := fmt.Sprintf("token-%03d", versions)
	require.Equal(t, last, v.Current())
	for u := range users {
		for s := range seen[u] {
			require.True(t, written[s], "a use got %q, never written", s)
		}
	}
	reloaded, failed := v.reports()
	require.Empty(t, failed, "a rename is never seen half done")
	require.NotEmpty(t, reloaded)
	require.Equal(t, last, reloaded[len(reloaded)-1])
	require.LessOrEqual(t, len(reloaded), versions, "at most a report per change")
	times := map[string]int{}
	for i, r := range reloaded {
		times[r]++
		require.LessOrEqual(t, times[r], 2, "%q reported more than twice", r)
		if i > 0 {
			require.LessOrEqual(t, reloaded[i-1], r, "never back to an older version")
		}
	}
	t.Logf("%d users: %d reports for %d versions, %d of them a second report of one version", users, len(reloaded), versions, len(reloaded)-len(times))
	require.EqualValues(t, 1+len(reloaded), v.parses.Load(), "every read after the first reported, once")
}
