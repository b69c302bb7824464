package parse

import "fmt"

// luafw patch 6: a bound on syntax levels, checked on tokens before the
// parser builds the nesting they open.
//
// Lua 5.1 refuses a chunk nested deeper than LUAI_MAXCCALLS (200) C levels
// ("chunk has too many syntax levels"). gopher-lua's parser (goyacc) keeps
// its stack on the heap, but the compiler recurses over the tree, so a
// hostile chunk nested a million deep grew the Go stack without bound and
// took quadratic time. The lexer counts here what makes the tree deep:
//
//   - brackets ( [ { and blocks (function, if, while, for, do, repeat,
//     closed by end or until), one level each;
//   - unary operators (not, #, unary -) waiting for their operand;
//   - right-associative chains (.., ^), one level per operator, since the
//     parser nests them to the right.
//
// Each of these costs at least one level in Lua 5.1's own count too, so
// what Lua 5.1 accepts stays accepted. Left-associative chains (1+1+...,
// a.b.c, f()(), and/or) are not levels in Lua 5.1 and are not counted
// as levels; but the parser nests them to the left and the compiler (and
// its constant folding) recurses down that spine, so one chain is bounded
// by MaxChainLength operators (5,000,000 `+1` overflowed the Go stack).
// That bound is far beyond ordinary code but is not Lua 5.1's, which
// has none.

// MaxSyntaxLevels is Lua 5.1's LUAI_MAXCCALLS.
const MaxSyntaxLevels = 200

// MaxChainLength bounds the operators of one left-associative chain
// (binary operators, field and method accesses, calls and indexing).
const MaxChainLength = 1 << 16

// interruptEvery is how many tokens the lexer reads between two calls of
// Lexer.Interrupted (luafw patch 7).
const interruptEvery = 4096

// LevelError is a chunk nested past MaxSyntaxLevels.
type LevelError struct {
	Source string
	Line   int
	Chain  bool // a chain longer than MaxChainLength
}

func (e *LevelError) Error() string {
	if e.Chain {
		return fmt.Sprintf("%s:%d: expression too long", e.Source, e.Line)
	}
	return fmt.Sprintf("%s:%d: chunk has too many syntax levels", e.Source, e.Line)
}

type syntaxLevel struct {
	awaitDo bool // a while or for whose do has not come yet
	// Levels inside this bracket or block but not in a nested one:
	unary int // unary operators waiting for their operand
	cat   int // .. operators of the current chain
	pow   int // ^ operators of the current chain
	left  int // operators of the current left-associative chain
}

type syntaxLevels struct {
	stack []syntaxLevel // stack[0] is the chunk
	depth int           // len(stack)-1 plus every unary, cat and pow
}

func (s *syntaxLevels) top() *syntaxLevel {
	if len(s.stack) == 0 {
		s.stack = append(s.stack, syntaxLevel{})
	}
	return &s.stack[len(s.stack)-1]
}

func (s *syntaxLevels) open(awaitDo bool) {
	s.top()
	s.stack = append(s.stack, syntaxLevel{awaitDo: awaitDo})
	s.depth++
}

func (s *syntaxLevels) close() {
	if len(s.stack) > 1 {
		l := s.stack[len(s.stack)-1]
		s.depth -= 1 + l.unary + l.cat + l.pow
		s.stack = s.stack[:len(s.stack)-1]
	}
}

// endsOperand reports whether a token of type t can end an operand, so
// that a - after it is binary.
func endsOperand(t int) bool {
	switch t {
	case TIdent, TNumber, TString, TNil, TTrue, TFalse, T3Comma, ')', ']', '}', TEnd:
		return true
	}
	return false
}

// next accounts for a token of type t after one of type prev and reports
// whether the depth stays within MaxSyntaxLevels and the current chain
// within MaxChainLength.
func (s *syntaxLevels) next(t, prev int) (levelsOK, chainOK bool) {
	l := s.top()
	unary := t == TNot || t == '#' || (t == '-' && !endsOperand(prev))
	switch {
	case unary:
	case endsOperand(prev) && (t == '(' || t == '[' || t == '{' || t == TString || t == '.' || t == ':'):
		l.left++ // a suffix: call, index, field, method
	case t == '+' || t == '-' || t == '*' || t == '/' || t == '%' || t == TAnd || t == TOr ||
		t == '<' || t == '>' || t == TLte || t == TGte || t == TEqeq || t == TNeq:
		l.left++
	case t == T2Comma || t == '^' || endsOperand(t):
	default:
		l.left = 0
	}
	switch {
	case unary:
		l.unary++
		s.depth++
	case endsOperand(t):
		// An operand: the unary operators before it are done. (A closing
		// bracket is handled below, on its own level first.)
	case t == T2Comma:
		l.cat++
		s.depth++
		s.depth -= l.pow
		l.pow = 0
	case t == '^':
		l.pow++
		s.depth++
	case t == '+' || t == '-' || t == '*' || t == '/' || t == '%':
		s.depth -= l.pow
		l.pow = 0
	default:
		// Anything else ends the chains: comparisons, and, or, =, ,, ;,
		// keywords.
		s.depth -= l.pow + l.cat
		l.pow, l.cat = 0, 0
	}
	switch t {
	case '(', '[', '{', TFunction, TIf, TRepeat:
		s.open(false)
	case TWhile, TFor:
		s.open(true)
	case TDo:
		if l := s.top(); l.awaitDo {
			l.awaitDo = false
		} else {
			s.open(false)
		}
	case ')', ']', '}', TEnd, TUntil:
		s.close()
	}
	if endsOperand(t) {
		l := s.top()
		s.depth -= l.unary
		l.unary = 0
	}
	return s.depth <= MaxSyntaxLevels, l.left <= MaxChainLength
}
