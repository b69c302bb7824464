package engine

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/luafw/luafw/internal/sandbox"
	lua "github.com/luafw/luafw/lua"
	"github.com/luafw/luafw/lua/ast"
	"github.com/luafw/luafw/lua/parse"
)

// The static checks of a plugin's chunk, run at every load (so by `luafw
// check`, reload and run) before its top level runs. They read the AST
// that the compiler gets and the API registry (api.go), and find what
// would otherwise fail only when a packet arrives, or pass silently:
//
//   - errors: reading a name the API does not have (fw.DORP, net.sett,
//     string.fromat), and a field or method a callback's packet lacks
//     (pkt.dprot, pkt:set_mrak, pkt.tcp.syns, pkt.ct:set_mrak);
//   - warnings: assigning to an API table (fw.DROP = 1, pkt.mark = 1: a
//     run-time error) or replacing a module (fw = nil), and assigning a
//     global inside a function (each worker has its own Lua state, so a
//     global set while handling packets is neither shared nor reset).
//
// A callback's packet parameter is the first parameter of a function given
// as fn to fw.register, written there or as the name of a local function.
// A name the script shadows with a local is the script's own.

// Finding is one result of the static checks.
type Finding struct {
	File  string
	Line  int
	Msg   string
	Error bool // an error refuses the load; a warning does only in strict mode
}

func (f Finding) String() string {
	return fmt.Sprintf("%s:%d: %s", f.File, f.Line, f.Msg)
}

// The kinds of a name in scope.
const (
	kindLocal  = iota + 1 // the script's own
	kindPacket            // a callback's packet parameter
)

// linter walks a chunk twice: the first walk (collecting) only finds the
// callbacks (the functions given as fn to fw.register, by value or by the
// name of a function the chunk defines), which the second, reporting walk
// needs before it reaches them.
type linter struct {
	file       string
	ix         apiIndex
	collecting bool
	callbacks  map[*ast.FunctionExpr]bool
	fnNames    map[string]bool                // names given as fn
	defs       map[string][]*ast.FunctionExpr // functions assigned to each name
	scopes     []map[string]int
	depth      int // function nesting; 0 at the top level
	out        []Finding
}

// Lint runs the static checks over the plugin spec names (its Source, or
// its File read), returning every finding; a file that cannot be read or
// parsed is a *LoadError. Loading runs the same checks; Lint is for tools
// that list all findings (`luafw check`).
func Lint(spec PluginSpec) ([]Finding, error) {
	spec = spec.normalize()
	src, err := spec.source()
	if err != nil {
		return nil, err
	}
	chunk, err := parse.Parse(bytes.NewReader(src), spec.File)
	if err != nil {
		return nil, syntaxError(spec, src, err)
	}
	return lint(spec.File, chunk), nil
}

// lint runs the static checks over a parsed chunk.
func lint(file string, chunk []ast.Stmt) []Finding {
	l := &linter{file: file, ix: lintIndex(), collecting: true, callbacks: map[*ast.FunctionExpr]bool{},
		fnNames: map[string]bool{}, defs: map[string][]*ast.FunctionExpr{}}
	l.push()
	l.stmts(chunk)
	for name := range l.fnNames {
		for _, fn := range l.defs[name] {
			l.callbacks[fn] = true
		}
	}
	l.collecting = false
	l.scopes = nil
	l.push()
	l.stmts(chunk)
	return l.out
}

// lintIndex is the registry with the sandbox's standard library tables
// added (their names from a real sandboxed state).
func lintIndex() apiIndex {
	ix := newAPIIndex()
	L := sandbox.NewState()
	defer L.Close()
	for _, lib := range stdlibTables {
		t, ok := L.G.Global.RawGetString(lib).(*lua.LTable)
		if !ok {
			continue
		}
		ix[lib] = map[string]APIName{}
		for _, k := range tableKeys(t) {
			ix[lib][k] = APIName{Table: lib, Name: k}
		}
	}
	return ix
}

func (l *linter) push() { l.scopes = append(l.scopes, map[string]int{}) }
func (l *linter) pop()  { l.scopes = l.scopes[:len(l.scopes)-1] }

func (l *linter) declare(name string, kind int) { l.scopes[len(l.scopes)-1][name] = kind }

// lookup is the kind of name in scope; 0 for a global.
func (l *linter) lookup(name string) int {
	for i := len(l.scopes) - 1; i >= 0; i-- {
		if k, ok := l.scopes[i][name]; ok {
			return k
		}
	}
	return 0
}

func (l *linter) report(line int, isErr bool, format string, args ...any) {
	if l.collecting {
		return
	}
	l.out = append(l.out, Finding{File: l.file, Line: line, Msg: fmt.Sprintf(format, args...), Error: isErr})
}

func exprAt(exprs []ast.Expr, i int) ast.Expr {
	if i < len(exprs) {
		return exprs[i]
	}
	return nil
}

// register notes the callbacks of a fw.register{...} call.
func (l *linter) register(call *ast.FuncCallExpr) {
	if !l.collecting || apiPath(call.Func) != "fw.register" || len(call.Args) != 1 {
		return
	}
	t, ok := call.Args[0].(*ast.TableExpr)
	if !ok {
		return
	}
	for _, f := range t.Fields {
		if k, ok := f.Key.(*ast.StringExpr); !ok || k.Value != "fn" {
			continue
		}
		switch v := f.Value.(type) {
		case *ast.FunctionExpr:
			l.callbacks[v] = true
		case *ast.IdentExpr:
			l.fnNames[v.Value] = true
		}
	}
}

// define notes a function assigned to a name, which fw.register may name.
func (l *linter) define(name string, e ast.Expr) {
	if fn, ok := e.(*ast.FunctionExpr); ok && l.collecting {
		l.defs[name] = append(l.defs[name], fn)
	}
}

// apiPath is "fw", "fw.priority", "fw.register", ... for a chain of
// constant field reads from a global, else "".
func apiPath(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.IdentExpr:
		return e.Value
	case *ast.AttrGetExpr:
		k, ok := e.Key.(*ast.StringExpr)
		if !ok {
			return ""
		}
		if p := apiPath(e.Object); p != "" {
			return p + "." + k.Value
		}
	}
	return ""
}

// table is the API table an expression stands for ("fw", "fw.priority",
// "pkt", "pkt.tcp"), or "" when it is none (or the script's own).
func (l *linter) table(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.IdentExpr:
		switch l.lookup(e.Value) {
		case kindPacket:
			return "pkt"
		case 0:
			if _, ok := l.ix[e.Value]; ok && !isView(e.Value) && apiTypes[e.Value] == "" {
				return e.Value
			}
		}
	case *ast.AttrGetExpr:
		k, ok := e.Key.(*ast.StringExpr)
		if !ok {
			return ""
		}
		if outer := l.table(e.Object); outer != "" {
			if _, ok := l.ix[outer+"."+k.Value]; ok && apiTypes[outer+"."+k.Value] == "" {
				return outer + "." + k.Value
			}
		}
	}
	return ""
}

// field checks a read of a constant field.
//
// A name the standard library lacks (string, table, math, os) is reported
// only where it is called: reading it gives nil, as in Lua 5.1, and code
// such as `local unpack = table.unpack or unpack` relies on that; calling
// it is always a mistake.
func (l *linter) field(e *ast.AttrGetExpr, called bool) {
	k, ok := e.Key.(*ast.StringExpr)
	if !ok {
		return
	}
	t := l.table(e.Object)
	if t == "" || !called && stdlibTable(t) {
		return
	}
	if _, ok := l.ix[t][k.Value]; !ok {
		l.report(e.Line(), true, "%s", sandbox.NoSuchField(t, k.Value, l.ix.names(t)))
	}
}

// stdlibTables are the sandbox's standard library tables.
var stdlibTables = []string{"string", "table", "math", "os"}

func stdlibTable(t string) bool { return slices.Contains(stdlibTables, t) }

// method checks obj:name(...) on a packet view.
func (l *linter) method(line int, recv ast.Expr, name string) {
	t := l.table(recv)
	if !isView(t) {
		return
	}
	if n, ok := l.ix[t][name]; !ok {
		l.report(line, true, "%s", sandbox.NoSuchField(t, name, l.ix.names(t)))
	} else if !n.Method() {
		l.report(line, true, "%s.%s is a field, not a method (%s:%s() calls it)", t, name, t, name)
	}
}

// assign checks the target of an assignment.
func (l *linter) assign(line int, lhs ast.Expr) {
	switch x := lhs.(type) {
	case *ast.IdentExpr:
		if l.lookup(x.Value) != 0 {
			return
		}
		if _, ok := l.ix[x.Value]; ok && l.table(x) != "" {
			l.report(line, false, "assignment to %s replaces a module of the API", x.Value)
		} else if l.depth > 0 {
			l.report(line, false, "global %s is assigned inside a function: each worker has its own Lua state, so it is neither shared nor reset; make it local (at the top level) or use state.map", x.Value)
		}
	case *ast.AttrGetExpr:
		if t := l.table(x.Object); t != "" {
			l.report(line, false, "assignment to %s: %s is read-only (an error when it runs)", describeField(t, x.Key), t)
		}
		l.expr(x.Object)
		l.expr(x.Key)
	default:
		l.expr(lhs)
	}
}

func describeField(table string, key ast.Expr) string {
	if k, ok := key.(*ast.StringExpr); ok {
		return table + "." + k.Value
	}
	return table + "[...]"
}

func (l *linter) stmts(stmts []ast.Stmt) {
	for _, s := range stmts {
		l.stmt(s)
	}
}

func (l *linter) block(stmts []ast.Stmt) {
	l.push()
	l.stmts(stmts)
	l.pop()
}

func (l *linter) stmt(s ast.Stmt) {
	switch s := s.(type) {
	case *ast.AssignStmt:
		l.exprs(s.Rhs)
		for i, lhs := range s.Lhs {
			if id, ok := lhs.(*ast.IdentExpr); ok {
				l.define(id.Value, exprAt(s.Rhs, i))
			}
			l.assign(s.Line(), lhs)
		}
	case *ast.LocalAssignStmt:
		if len(s.Names) == 1 && len(s.Exprs) == 1 {
			if _, ok := s.Exprs[0].(*ast.FunctionExpr); ok { // local function f: f is in scope in its body
				l.declare(s.Names[0], kindLocal)
			}
		}
		l.exprs(s.Exprs)
		for i, n := range s.Names {
			l.define(n, exprAt(s.Exprs, i))
			l.declare(n, kindLocal)
		}
	case *ast.FuncCallStmt:
		l.expr(s.Expr)
	case *ast.DoBlockStmt:
		l.block(s.Stmts)
	case *ast.WhileStmt:
		l.expr(s.Condition)
		l.block(s.Stmts)
	case *ast.RepeatStmt:
		l.push()
		l.stmts(s.Stmts)
		l.expr(s.Condition)
		l.pop()
	case *ast.IfStmt:
		l.expr(s.Condition)
		l.block(s.Then)
		l.block(s.Else)
	case *ast.NumberForStmt:
		l.expr(s.Init)
		l.expr(s.Limit)
		l.expr(s.Step)
		l.push()
		l.declare(s.Name, kindLocal)
		l.stmts(s.Stmts)
		l.pop()
	case *ast.GenericForStmt:
		l.exprs(s.Exprs)
		l.push()
		for _, n := range s.Names {
			l.declare(n, kindLocal)
		}
		l.stmts(s.Stmts)
		l.pop()
	case *ast.FuncDefStmt:
		if id, ok := s.Name.Func.(*ast.IdentExpr); ok {
			l.define(id.Value, s.Func)
		}
		if s.Name.Func != nil {
			l.assign(s.Line(), s.Name.Func)
		} else {
			l.expr(s.Name.Receiver)
		}
		l.function(s.Func, s.Name.Func == nil)
	case *ast.ReturnStmt:
		l.exprs(s.Exprs)
	}
}

func (l *linter) exprs(es []ast.Expr) {
	for _, e := range es {
		l.expr(e)
	}
}

func (l *linter) expr(e ast.Expr) {
	switch e := e.(type) {
	case *ast.AttrGetExpr:
		l.attr(e, false)
	case *ast.TableExpr:
		for _, f := range e.Fields {
			l.expr(f.Key)
			l.expr(f.Value)
		}
	case *ast.FuncCallExpr:
		l.register(e)
		if e.Receiver != nil {
			l.method(e.Line(), e.Receiver, e.Method)
			l.expr(e.Receiver)
		} else if f, ok := e.Func.(*ast.AttrGetExpr); ok {
			l.attr(f, true)
		} else {
			l.expr(e.Func)
		}
		l.exprs(e.Args)
	case *ast.LogicalOpExpr:
		l.expr(e.Lhs)
		l.expr(e.Rhs)
	case *ast.RelationalOpExpr:
		l.expr(e.Lhs)
		l.expr(e.Rhs)
	case *ast.StringConcatOpExpr:
		l.expr(e.Lhs)
		l.expr(e.Rhs)
	case *ast.ArithmeticOpExpr:
		l.expr(e.Lhs)
		l.expr(e.Rhs)
	case *ast.UnaryMinusOpExpr:
		l.expr(e.Expr)
	case *ast.UnaryNotOpExpr:
		l.expr(e.Expr)
	case *ast.UnaryLenOpExpr:
		l.expr(e.Expr)
	case *ast.FunctionExpr:
		l.function(e, false)
	}
}

// attr checks a field read (called: as the function of a call) and the
// expressions inside it.
func (l *linter) attr(e *ast.AttrGetExpr, called bool) {
	l.field(e, called)
	l.expr(e.Object)
	l.expr(e.Key)
}

func (l *linter) function(f *ast.FunctionExpr, method bool) {
	l.depth++
	l.push()
	if method {
		l.declare("self", kindLocal)
	}
	for i, n := range f.ParList.Names {
		kind := kindLocal
		if i == 0 && l.callbacks[f] {
			kind = kindPacket
		}
		l.declare(n, kind)
	}
	l.stmts(f.Stmts)
	l.pop()
	l.depth--
}
