package kkrt_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/fedrisk/fedrisk/internal/psi/kkrt"
)

// runStream drives role over conn until the role is done: every message is
// a frame of a 4-byte big-endian length and its encoding. Received
// messages are handled in order on this goroutine while another writes
// the answers, so computing and sending overlap. It returns the bytes
// written and read (frames included).
func runStream(ctx context.Context, role kkrt.Role, conn net.Conn) (sent, received int64, err error) {
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	queue := make(chan kkrt.Message, 1024) // windows bound what is in flight
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() {
		w := bufio.NewWriterSize(conn, 1<<20)
		var buf []byte
		for m := range queue {
			if werr != nil {
				continue
			}
			var err error
			if buf, err = kkrt.AppendEncode(append(buf[:0], 0, 0, 0, 0), m); err != nil {
				werr = err
				continue
			}
			binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
			if _, err := w.Write(buf); err != nil {
				werr = err
				continue
			}
			sent += int64(len(buf))
			if len(queue) == 0 {
				if err := w.Flush(); err != nil {
					werr = err
				}
			}
		}
		if werr == nil {
			werr = w.Flush()
		}
	})
	finish := func(err error) (int64, int64, error) {
		close(queue)
		wg.Wait()
		if err == nil {
			err = werr
		}
		return sent, received, err
	}

	out, err := role.Start(ctx)
	if err != nil {
		return finish(err)
	}
	for _, m := range out {
		queue <- m
	}
	r := bufio.NewReaderSize(conn, 1<<20)
	var frame []byte
	for !role.Done() {
		var head [4]byte
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return finish(fmt.Errorf("read: %w", err))
		}
		n := binary.BigEndian.Uint32(head[:])
		if n > kkrt.MaxMessageBytes {
			return finish(fmt.Errorf("frame of %d bytes: %w", n, kkrt.ErrOversized))
		}
		if cap(frame) < int(n) {
			frame = make([]byte, n)
		}
		frame = frame[:n]
		if _, err := io.ReadFull(r, frame); err != nil {
			return finish(fmt.Errorf("read: %w", err))
		}
		received += int64(4 + n)
		msg, err := kkrt.Decode(frame)
		if err != nil {
			return finish(err)
		}
		out, err := role.Handle(ctx, msg)
		if err != nil {
			return finish(err)
		}
		for _, m := range out {
			queue <- m
		}
	}
	return finish(nil)
}

// runPair runs guest and host over a fresh loopback TCP connection, each
// on its own goroutine.
func runPair(ctx context.Context, guest, host kkrt.Role) (guestSent, hostSent int64, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	defer ln.Close()
	var herr error
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			herr = err
			return
		}
		defer c.Close()
		hostSent, _, herr = runStream(ctx, host, c)
	})
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0, 0, err
	}
	guestSent, _, gerr := runStream(ctx, guest, c)
	_ = c.Close()
	wg.Wait()
	return guestSent, hostSent, errors.Join(gerr, herr)
}
