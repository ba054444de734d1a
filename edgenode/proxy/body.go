package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"
	"time"
)

// copyBufSize is the size of the pooled buffers large bodies move through,
// bypassing the connections' smaller bufio buffers.
const copyBufSize = 32 << 10

// errBadChunk: a chunked body is not well-formed (chunked.go says how
// strictly that is read). Every chunk error is one (errors.Is).
var errBadChunk = errors.New("malformed chunked encoding")

// copyError says which side of a copy failed: a failed source means the
// sender went away or sent garbage, a failed destination that the receiver did.
type copyError struct {
	src bool
	err error
}

func (e *copyError) Error() string { return e.err.Error() }
func (e *copyError) Unwrap() error { return e.err }

func srcErr(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return &copyError{src: true, err: err}
}
func dstErr(err error) error { return &copyError{err: err} }

// copier moves a body from src to dst, flushing dst only when the next read
// from src would block: small messages leave in one write, streams leave as
// soon as their bytes arrive.
type copier struct {
	bufs *sync.Pool // of *[copyBufSize]byte
	buf  *[copyBufSize]byte
	// readsFrom and writesTo are the client connection when it is the
	// source or the destination, to extend its deadlines; nil otherwise.
	// (Pointers, not callbacks: a method value would allocate per request.)
	readsFrom, writesTo *conn
}

func (c *copier) beforeRead() {
	if c.readsFrom != nil {
		c.readsFrom.armBodyRead()
	}
}

func (c *copier) beforeWrite() {
	if c.writesTo != nil {
		c.writesTo.armWrite(time.Now())
	}
}

func (c *copier) release() {
	if c.buf != nil {
		c.bufs.Put(c.buf)
		c.buf = nil
	}
}

func (c *copier) flush(dst *bufio.Writer) error {
	if dst.Buffered() == 0 {
		return nil
	}
	c.beforeWrite()
	if err := dst.Flush(); err != nil {
		return dstErr(err)
	}
	return nil
}

// fill makes at least one byte readable from src, flushing dst first if it
// has to wait for it.
func (c *copier) fill(dst *bufio.Writer, src *bufio.Reader) error {
	if src.Buffered() > 0 {
		return nil
	}
	if err := c.flush(dst); err != nil {
		return err
	}
	c.beforeRead()
	if _, err := src.Peek(1); err != nil {
		return srcErr(err)
	}
	return nil
}

// copyN copies exactly n bytes.
func (c *copier) copyN(dst *bufio.Writer, src *bufio.Reader, n int64) error {
	for n > 0 {
		if src.Buffered() == 0 && n >= copyBufSize/2 {
			// A large remainder: read straight from the connection into a
			// pooled buffer instead of through src's small one.
			if err := c.flush(dst); err != nil {
				return err
			}
			if c.buf == nil {
				c.buf = c.bufs.Get().(*[copyBufSize]byte)
			}
			c.beforeRead()
			m, err := src.Read(c.buf[:min(n, copyBufSize)])
			if m > 0 {
				c.beforeWrite()
				if _, werr := dst.Write(c.buf[:m]); werr != nil {
					return dstErr(werr)
				}
				n -= int64(m)
			}
			if err != nil && n > 0 {
				return srcErr(err)
			}
			continue
		}
		if err := c.fill(dst, src); err != nil {
			return err
		}
		b, _ := src.Peek(int(min(n, int64(src.Buffered()))))
		if _, err := dst.Write(b); err != nil {
			return dstErr(err)
		}
		src.Discard(len(b))
		n -= int64(len(b))
	}
	return nil
}

// copyUntilEOF copies until src ends; the end is not an error.
func (c *copier) copyUntilEOF(dst *bufio.Writer, src *bufio.Reader) error {
	for {
		err := c.copyN(dst, src, copyBufSize)
		var ce *copyError
		if errors.As(err, &ce) && ce.src && errors.Is(ce.err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// readLine returns the next line of src (with its line ending), flushing
// dst first if src does not hold a whole line yet.
func (c *copier) readLine(dst *bufio.Writer, src *bufio.Reader) ([]byte, error) {
	if b, _ := src.Peek(src.Buffered()); bytes.IndexByte(b, '\n') < 0 {
		if err := c.flush(dst); err != nil {
			return nil, err
		}
		c.beforeRead()
	}
	line, err := src.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, srcErr(errChunkLineLong)
	}
	if err != nil {
		return nil, srcErr(err)
	}
	return line, nil
}
