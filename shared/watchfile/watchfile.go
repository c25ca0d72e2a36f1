// Package watchfile keeps a value read from files and reads it again when
// the files change: certificates, keys and tokens that operators rotate in
// place (cert-manager, Vault agents, a Kubernetes secret volume swapping a
// symlink) while the process runs. The files are stat'ed at each use and
// read only when one of them changed; a read that does not load leaves the
// last good value in use, since a file caught half-written or gone for a
// moment during a swap must not fail what the previous contents would
// pass.
//
// It knows nothing of what the files hold: the caller parses them and
// says what to log. Messages name a file's setting and path, never its
// contents, so a secret read through it stays out of errors.
package watchfile

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// File is one of the files a value is read from.
type File struct {
	// Path is the file's name; a symlink is followed at each look.
	Path string
	// Setting is the variable the operator set it with (TSDB_CA_FILE):
	// what errors name.
	Setting string
	// What is what errors call the file: "CA file", "client key".
	What string
}

// cannotRead is the error for a file that cannot be stat'ed or read,
// naming its setting.
func (f File) cannotRead(err error) error {
	return fmt.Errorf("%s=%q: cannot read the %s: %w", f.Setting, f.Path, f.What, unwrapPath(err))
}

// unwrapPath drops the *PathError's repetition of the path the message
// already quotes.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// NonEmptyText is the Parse of a value that is one file's text, a token or
// a secret: the content without surrounding white space. A file with
// nothing else is an error naming it (an operator's empty secret, or a
// rewrite caught half done), never the empty value.
func NonEmptyText(f File) func(contents [][]byte) (string, error) {
	return func(contents [][]byte) (string, error) {
		v := strings.TrimSpace(string(contents[0]))
		if v == "" {
			return "", fmt.Errorf("%s=%q: the %s is empty", f.Setting, f.Path, f.What)
		}
		return v, nil
	}
}

// Spec says which files a value comes from, how to make it from them,
// and what to say when they change.
type Spec[T any] struct {
	// Files are read together: a change to any of them reads them all,
	// as a certificate and its key must be.
	Files []File
	// Parse makes the value from the files' contents, in the order of
	// Files. Its errors must not quote the contents.
	Parse func(contents [][]byte) (T, error)
	// WaitWhileUnreachable keeps the last value, and says nothing, while
	// a file cannot be stat'ed; the files are read again once they all
	// stat and one of them changed. Without it a file out of reach is a
	// change like any other: read, failed, reported once until it is
	// back.
	WaitWhileUnreachable bool
	// Reloaded and Failed (both required) report each read after the
	// first, once per change of the files, never once per use: a use is
	// a handshake or a query. Failed gets the value still in use. They
	// run with the Value locked, so that reports come in the order of
	// the reads: they must not call Current.
	Reloaded func(now T)
	Failed   func(last T, err error)
}

// Value is a value read from files and read again when they change. It is
// safe for concurrent use.
type Value[T any] struct {
	spec Spec[T]

	mu     sync.Mutex
	stamps []stamp // a zero stamp for a file that could not be stat'ed
	last   T
}

// New reads the files once, so that a wrong setting fails at start with
// the setting named; that first read is not reported.
func New[T any](spec Spec[T]) (*Value[T], error) {
	v := &Value[T]{spec: spec}
	stamps, last, err := v.load()
	if err != nil {
		return nil, err
	}
	v.stamps, v.last = stamps, last
	return v, nil
}

// load reads the files and the stamps they had before they were read: a
// file rewritten while it is read is read again at the next use. Every
// file is stat'ed even when one cannot be, so that the stamps remembered
// are those Current compares against.
func (v *Value[T]) load() ([]stamp, T, error) {
	var zero T
	stamps := make([]stamp, len(v.spec.Files))
	var statErr error
	for i, f := range v.spec.Files {
		s, err := stampOf(f.Path)
		if err != nil && statErr == nil {
			statErr = f.cannotRead(err)
		}
		stamps[i] = s
	}
	if statErr != nil {
		return stamps, zero, statErr
	}
	contents := make([][]byte, len(v.spec.Files))
	for i, f := range v.spec.Files {
		data, err := os.ReadFile(f.Path)
		if err != nil {
			return stamps, zero, f.cannotRead(err)
		}
		contents[i] = data
	}
	last, err := v.spec.Parse(contents)
	return stamps, last, err
}

// Current is the value to use: the files' when they changed and load, the
// last good one otherwise. It costs one stat call per file.
func (v *Value[T]) Current() T {
	v.mu.Lock()
	defer v.mu.Unlock()
	unchanged := true
	for i, f := range v.spec.Files {
		s, err := stampOf(f.Path)
		if err != nil && v.spec.WaitWhileUnreachable {
			return v.last
		}
		// A file out of reach has the zero stamp, which is the same as
		// the one remembered when it was out of reach before: already
		// said.
		unchanged = unchanged && s.same(v.stamps[i])
	}
	if unchanged {
		return v.last
	}
	stamps, now, err := v.load()
	// Remember the stamps all the same: a broken rewrite is read again
	// when the files change, not at every use.
	v.stamps = stamps
	if err != nil {
		// Once per change: the next report about these files is the
		// one that says a rewrite loaded.
		v.spec.Failed(v.last, err)
		return v.last
	}
	v.last = now
	v.spec.Reloaded(now)
	return now
}

// stamp is what tells a rewritten file from the one last read: its
// modification time and size, and which file it is. The last catches a
// symlink swapped to another file (a Kubernetes secret or ConfigMap
// volume's update) even when the new file has the old one's size and
// time, as two CA certificates made alike, or two tokens of one length
// written in the same second, often do.
type stamp struct {
	mod  time.Time
	size int64
	file os.FileInfo
}

// stampOf stats path, following symlinks: what matters is the file the
// name leads to now. A file that cannot be stat'ed has the zero stamp.
func stampOf(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{mod: fi.ModTime(), size: fi.Size(), file: fi}, nil
}

// same reports whether s and o are stamps of the same, unchanged file.
func (s stamp) same(o stamp) bool {
	if s.file == nil || o.file == nil {
		return s.file == o.file && s.mod.Equal(o.mod) && s.size == o.size
	}
	return s.mod.Equal(o.mod) && s.size == o.size && os.SameFile(s.file, o.file)
}
