// Package rotate owns luafw's size-rotated output files (decision events,
// packet captures): a file is written until the next record would take it
// past its size limit, then it is renamed to NAME.1 (NAME.1 to NAME.2, and
// so on up to NAME.KEEP; the oldest is removed) and a new NAME is started.
//
// Records are never split across files; a record larger than the limit
// gets a file of its own. A File is not safe for concurrent use: one
// writer goroutine owns it. Costs: one write system call per record (the
// caller batches if it wants fewer) and a few renames per rotation.
package rotate

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File is a size-rotated file.
type File struct {
	path    string
	maxSize int64 // rotate before a record would pass it; 0: never
	keep    int   // rotated files kept (NAME.1 ... NAME.keep)
	header  func() []byte
	hdrLen  int64
	f       *os.File
	size    int64
}

// Open opens (appending to) the file at path, creating its directory if
// needed. header, when not nil, gives the bytes every new file starts with
// (a pcapng section header); it is written to a file that is empty when
// opened and after each rotation.
func Open(path string, maxSize int64, keep int, header func() []byte) (*File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("rotate: %w", err)
	}
	r := &File{path: path, maxSize: maxSize, keep: max(keep, 0), header: header}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *File) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("rotate: %w", err)
	}
	r.f, r.size = f, st.Size()
	if r.size == 0 && r.header != nil {
		h := r.header()
		r.hdrLen = int64(len(h))
		n, err := r.f.Write(h)
		r.size += int64(n)
		if err != nil {
			return fmt.Errorf("rotate: writing header of %s: %w", r.path, err)
		}
	}
	return nil
}

// Write writes one record, rotating first when it would take the file
// past its size limit.
func (r *File) Write(rec []byte) (int, error) {
	if r.f == nil {
		return 0, fmt.Errorf("rotate: %s is closed", r.path)
	}
	if r.maxSize > 0 && r.size+int64(len(rec)) > r.maxSize && r.size > r.hdrLen {
		if err := r.Rotate(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Write(rec)
	r.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("rotate: writing %s: %w", r.path, err)
	}
	return n, nil
}

// Rotate closes the current file, shifts the rotated ones up by one
// (dropping the oldest) and opens a new one.
func (r *File) Rotate() error {
	if err := r.f.Close(); err != nil {
		return fmt.Errorf("rotate: closing %s: %w", r.path, err)
	}
	r.f = nil
	if r.keep == 0 {
		if err := os.Remove(r.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rotate: %w", err)
		}
		return r.open()
	}
	if err := os.Remove(r.name(r.keep)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("rotate: %w", err)
	}
	for i := r.keep - 1; i >= 1; i-- {
		if err := os.Rename(r.name(i), r.name(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rotate: %w", err)
		}
	}
	if err := os.Rename(r.path, r.name(1)); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	return r.open()
}

// name is the path of rotated file i (0: the current one).
func (r *File) name(i int) string {
	if i == 0 {
		return r.path
	}
	return fmt.Sprintf("%s.%d", r.path, i)
}

// Sync flushes the file to disk.
func (r *File) Sync() error {
	if r.f == nil {
		return nil
	}
	return r.f.Sync()
}

// Close closes the file.
func (r *File) Close() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
