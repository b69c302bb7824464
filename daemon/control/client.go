package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"syscall"
)

// Call sends cmd with args (nil for none) to the daemon at path and decodes
// the final result into result (nil to ignore it). Streamed items, if the
// command sends any, are skipped: use Stream for those. ctx bounds the whole
// exchange. A daemon-side failure is a *RemoteError; nothing listening is
// ErrNoDaemon.
func Call(ctx context.Context, path, cmd string, args, result any) error {
	return Stream(ctx, path, cmd, args, nil, result)
}

// Stream is Call for a command that streams: each item is passed to each
// (which may stop the stream by returning an error) before the final result
// is decoded into result.
func Stream(ctx context.Context, path, cmd string, args any, each func(json.RawMessage) error, result any) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w on %s", ErrNoDaemon, path)
		}
		return fmt.Errorf("control: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	req := Request{Cmd: cmd}
	if args != nil {
		if req.Args, err = json.Marshal(args); err != nil {
			return fmt.Errorf("control: %w", err)
		}
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return fmt.Errorf("control: sending %s: %w", cmd, ctxErr(ctx, err))
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return fmt.Errorf("control: %s: the daemon closed the connection without an answer: %w", cmd, ctxErr(ctx, err))
		}
		var resp Response
		if err := json.Unmarshal(line, &resp); err != nil {
			return fmt.Errorf("control: %s: bad response: %w", cmd, err)
		}
		if resp.More {
			if each != nil {
				if err := each(resp.Result); err != nil {
					return err
				}
			}
			continue
		}
		if resp.Error != "" {
			return &RemoteError{Cmd: cmd, Msg: resp.Error}
		}
		if result != nil && len(resp.Result) > 0 {
			if err := json.Unmarshal(resp.Result, result); err != nil {
				return fmt.Errorf("control: %s: bad result: %w", cmd, err)
			}
		}
		return nil
	}
}

// ctxErr prefers the context's error (a timeout) over the I/O error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
