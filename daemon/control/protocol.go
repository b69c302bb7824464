package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// MaxRequest bounds a request line.
const MaxRequest = 1 << 20

// Request is what a client sends: a command name and its arguments.
type Request struct {
	Cmd  string          `json:"cmd"`
	Args json.RawMessage `json:"args,omitempty"`
}

// Response is one line of the server's answer. More marks a streamed item:
// further lines follow, until one without More, which carries the final
// Result or the Error.
type Response struct {
	More   bool            `json:"more,omitempty"`
	Error  string          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// Handler serves one command. A streaming handler calls send for each item
// (send fails once the client has gone; the handler should then return).
// The returned value is the final result; an error is sent as its text.
type Handler func(ctx context.Context, args json.RawMessage, send func(item any) error) (any, error)

// ErrNoDaemon is returned by the client when nothing answers on the socket.
var ErrNoDaemon = errors.New("no luafw daemon answers")

// RemoteError is a command's failure as the daemon reported it.
type RemoteError struct {
	Cmd string
	Msg string
}

func (e *RemoteError) Error() string { return fmt.Sprintf("%s: %s", e.Cmd, e.Msg) }

// DecodeArgs unmarshals a request's arguments into v; absent arguments
// leave v as it is. Unknown fields are refused, so a typo is not ignored.
func DecodeArgs(args json.RawMessage, v any) error {
	if len(args) == 0 || string(args) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(args))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad arguments: %w", err)
	}
	return nil
}
