package engine

import (
	"bytes"
	"fmt"

	"github.com/luafw/luafw/lua/ast"
	"github.com/luafw/luafw/lua/parse"
)

// Syntax errors that point at the likely mistake. gopher-lua's parser
// says only "syntax error" at the token it could not take; the usual cause
// is a block or bracket left open earlier (a missing `end`, `}` or `)`).
// syntaxHint scans the tokens up to the error again, keeping a stack of
// what is open, and says what Lua 5.1 would: "'end' expected (to close
// 'if' at line 2)". It is used only on the error path.

// opener is a block or bracket still open at the error.
type opener struct {
	what  string // "function", "if", "{", ...
	close string // what closes it: "end", "until", "}"
	line  int
}

// syntaxHint returns what is missing at an error at line:col (line 0: the
// end of the chunk), or "" when the scan cannot tell.
func syntaxHint(src []byte, file string, line, col int) string {
	sc := parse.NewScanner(bytes.NewReader(src), file)
	var lx parse.Lexer
	var stack []opener
	var lastStmtEnd int // token type of the last return/break at the current depth, else 0
	// The parser's position is the scanner's: just past the token it
	// could not take.
	atError := func(tok ast.Token) bool {
		return line > 0 && (tok.Pos.Line > line || tok.Pos.Line == line && tok.Pos.Column+len(tok.Str) >= col)
	}
	for {
		tok, err := sc.Scan(&lx)
		if err != nil {
			return ""
		}
		lx.PrevTokenType = tok.Type
		if tok.Type < 0 || atError(tok) {
			break
		}
		push := func(what, close string) {
			stack = append(stack, opener{what, close, tok.Pos.Line})
			lastStmtEnd = 0
		}
		switch tok.Type {
		case parse.TFunction:
			push("function", "end")
		case parse.TIf:
			push("if", "end")
		case parse.TWhile:
			push("while", "end")
		case parse.TFor:
			push("for", "end")
		case parse.TRepeat:
			push("repeat", "until")
		case parse.TDo:
			// The do of while and for belongs to their block.
			if n := len(stack); n == 0 || (stack[n-1].what != "while" && stack[n-1].what != "for") || stack[n-1].close == "end do" {
				push("do", "end")
			} else {
				stack[n-1].close = "end do"
			}
		case '{':
			push("{", "}")
		case '(':
			push("(", ")")
		case '[':
			push("[", "]")
		case parse.TEnd, parse.TUntil, '}', ')', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			lastStmtEnd = 0
		case parse.TReturn, parse.TBreak:
			lastStmtEnd = tok.Type
		case parse.TElse, parse.TElseIf:
			lastStmtEnd = 0
		}
	}
	if len(stack) == 0 {
		return ""
	}
	top := stack[len(stack)-1]
	if top.close == "end do" {
		top.close = "end"
	}
	what := fmt.Sprintf("'%s' expected (to close '%s' at line %d)", top.close, top.what, top.line)
	switch {
	case line == 0:
		return what
	case len(top.what) == 1 && top.line < line:
		// A bracket left open on an earlier line.
		return what
	case len(top.what) > 1 && lastStmtEnd != 0:
		// return and break end their block: only its closer may follow.
		return what
	}
	return ""
}
