package tlsfiles

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// watched is a value read from files and read again when they change: the
// CA pool (caFile) and the client's certificate and key (clientCert) are
// both rotated in place while the process runs. The files are stat'ed at
// each use and read only when one of them changed; a read that does not
// load leaves the last good value in use. Each outcome of a read after
// the first is reported once per change of the files, through reloaded or
// failed, never once per use: a use is a handshake.
type watched[T any] struct {
	files []watchedFile
	parse func(contents [][]byte) (T, error)
	// waitWhileUnreachable keeps the last value, and says nothing, while
	// a file cannot be stat'ed; the files are read again once they all
	// stat and one of them changed. Without it a file out of reach is a
	// change like any other: read, failed, reported once until it is back.
	waitWhileUnreachable bool
	reloaded             func(now T)
	failed               func(last T, err error)

	mu     sync.Mutex
	stamps []fileStamp // a zero stamp for a file that could not be stat'ed
	last   T
}

// watchedFile is one of the files a watched value is read from.
type watchedFile struct {
	path, setting string
	what          string // what messages call it: "CA file", "client key"
}

// cannotRead is the error for a file that cannot be stat'ed or read,
// naming its setting.
func (f watchedFile) cannotRead(err error) error {
	return fmt.Errorf("%s=%q: cannot read the %s: %w", f.setting, f.path, f.what, unwrapPath(err))
}

// loadFirst reads the files once, so that a wrong setting fails at start
// with the setting named; that first read is not reported.
func (w *watched[T]) loadFirst() error {
	stamps, v, err := w.load()
	if err != nil {
		return err
	}
	w.stamps, w.last = stamps, v
	return nil
}

// load reads the files and the stamps they had before they were read: a
// file rewritten while it is read is read again at the next use. Every
// file is stat'ed even when one cannot be, so that the stamps remembered
// are those current compares against.
func (w *watched[T]) load() ([]fileStamp, T, error) {
	var zero T
	stamps := make([]fileStamp, len(w.files))
	var statErr error
	for i, f := range w.files {
		s, err := stampOf(f.path)
		if err != nil && statErr == nil {
			statErr = f.cannotRead(err)
		}
		stamps[i] = s
	}
	if statErr != nil {
		return stamps, zero, statErr
	}
	contents := make([][]byte, len(w.files))
	for i, f := range w.files {
		data, err := os.ReadFile(f.path)
		if err != nil {
			return stamps, zero, f.cannotRead(err)
		}
		contents[i] = data
	}
	v, err := w.parse(contents)
	return stamps, v, err
}

// current is the value to use: the files' when they changed and load, the
// last good one otherwise.
func (w *watched[T]) current() T {
	w.mu.Lock()
	defer w.mu.Unlock()
	unchanged := true
	for i, f := range w.files {
		s, err := stampOf(f.path)
		if err != nil && w.waitWhileUnreachable {
			return w.last
		}
		// A file out of reach has the zero stamp, which is the same as
		// the one remembered when it was out of reach before: already
		// said.
		unchanged = unchanged && s.same(w.stamps[i])
	}
	if unchanged {
		return w.last
	}
	stamps, v, err := w.load()
	// Remember the stamps all the same: a broken rewrite is read again
	// when the files change, not at every use.
	w.stamps = stamps
	if err != nil {
		// Once per change: the next report about these files is the
		// one that says a rewrite loaded.
		w.failed(w.last, err)
		return w.last
	}
	w.last = v
	w.reloaded(v)
	return v
}

// fileStamp is what tells a rewritten file from the one last read: its
// modification time and size, and which file it is. The last catches a
// symlink swapped to another file (a Kubernetes secret or ConfigMap
// volume's update) even when the new file has the old one's size and
// time, as two CA certificates made alike often do.
type fileStamp struct {
	mod  time.Time
	size int64
	file os.FileInfo
}

// stampOf stats path, following symlinks: what matters is the file the
// name leads to now. A file that cannot be stat'ed has the zero stamp.
func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size(), file: fi}, nil
}

// same reports whether s and o are stamps of the same, unchanged file.
func (s fileStamp) same(o fileStamp) bool {
	if s.file == nil || o.file == nil {
		return s.file == o.file && s.mod.Equal(o.mod) && s.size == o.size
	}
	return s.mod.Equal(o.mod) && s.size == o.size && os.SameFile(s.file, o.file)
}
