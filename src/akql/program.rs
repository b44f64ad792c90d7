//! The queries of one policy-set version, bound together for the matcher: every distinct
//! comparison numbered once, JSON paths resolved to slots.
//!
//! Why: operators write one query per concern, so queries share conjuncts (`action = "x"` in
//! every query of an action, `context.http_request.method = "POST"` in many). Evaluated as
//! separate trees, each candidate policy repeats them and walks its paths key by key. Bound,
//! a comparison is evaluated at most once per event ([`Memo`]) and reads its value straight
//! from the slot the column scan filled ([`super::scan::slots`]). The result is the tree's:
//! `and`/`or` short-circuit as in [`Node::eval`], and a comparison answers the same whichever
//! query asks.

use super::compile::{Node, Test};
use super::eval::{json, ColumnPaths, EventView, Slot};
use rustc_hash::FxHashMap;

/// A query as the matcher evaluates it: where its first step is in [`Program::steps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound(u32);

/// One comparison of a bound query and where evaluation goes next: another step, or an
/// answer ([`PASS`], [`FAIL`]).
#[derive(Debug, Clone, Copy)]
struct Step {
    test: u32,
    on_true: u32,
    on_false: u32,
}

const PASS: u32 = u32::MAX;
const FAIL: u32 = u32::MAX - 1;

/// The distinct comparisons of a policy set's queries, and every query as steps.
///
/// Why steps rather than the tree: a query's `and`/`or` tree becomes a graph whose nodes
/// are comparisons and whose edges say where a true or false answer leads (`a and b`: a
/// true `a` leads to `b`, a false one fails). Evaluating it is a loop over one array, with
/// no recursion and no boxes to follow, and it asks the same comparisons in the same order
/// as [`Node::eval`] short-circuits.
#[derive(Debug, Default, Clone)]
pub struct Program {
    tests: Vec<Test>,
    /// Per comparison: the slot of its JSON path (`None` for the event's own fields).
    slots: Vec<Option<Slot>>,
    numbers: FxHashMap<Test, u32>,
    steps: Vec<Step>,
}

impl Program {
    /// Binds a query's tree, numbering comparisons not seen before. `paths` gets the query's
    /// JSON paths.
    pub fn bind(&mut self, node: &Node, paths: &mut ColumnPaths) -> Bound {
        Bound(self.lay(node, PASS, FAIL, paths))
    }

    /// Lays out `node`'s steps so that it continues at `on_true` or `on_false`; its first
    /// step. The right operand is laid first, since the left one leads to it.
    fn lay(&mut self, node: &Node, on_true: u32, on_false: u32, paths: &mut ColumnPaths) -> u32 {
        match node {
            Node::And(a, b) => {
                let right = self.lay(b, on_true, on_false, paths);
                self.lay(a, right, on_false, paths)
            }
            Node::Or(a, b) => {
                let right = self.lay(b, on_true, on_false, paths);
                self.lay(a, on_true, right, paths)
            }
            Node::Test(t) => {
                let test = self.number(t, paths);
                self.steps.push(Step {
                    test,
                    on_true,
                    on_false,
                });
                (self.steps.len() - 1) as u32
            }
        }
    }

    fn number(&mut self, t: &Test, paths: &mut ColumnPaths) -> u32 {
        if let Some(&n) = self.numbers.get(t) {
            return n;
        }
        let n = self.tests.len() as u32;
        self.slots.push(match t {
            Test::Json(_, path, _) => Some(paths.slot_of(path)),
            _ => None,
        });
        self.tests.push(t.clone());
        self.numbers.insert(t.clone(), n);
        n
    }

    /// Number of distinct comparisons.
    pub fn len(&self) -> usize {
        self.tests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tests.is_empty()
    }

    /// Number of steps, all bound queries together.
    pub fn steps(&self) -> usize {
        self.steps.len()
    }

    /// Whether the event matches a bound query. `view` must be made on columns guided by the
    /// `paths` the query was bound with, and `memo` must be this event's.
    pub fn eval(&self, b: Bound, view: &EventView<'_, '_>, memo: &mut Memo) -> bool {
        let mut at = b.0;
        // Every step leads only to steps laid before it ([`Program::lay`]) or to an answer,
        // so the loop ends.
        loop {
            let Some(step) = self.steps.get(at as usize) else {
                return at == PASS;
            };
            let n = step.test as usize;
            let hit = match memo.get(n) {
                Some(known) => known,
                None => {
                    let hit = self.test(n, view);
                    memo.set(n, hit);
                    hit
                }
            };
            at = if hit { step.on_true } else { step.on_false };
        }
    }

    fn test(&self, n: usize, view: &EventView<'_, '_>) -> bool {
        match (&self.tests[n], self.slots[n]) {
            (Test::Json(op, _, x), Some(s)) => json(*op, x, view.slot(s)),
            (t, _) => t.eval(view),
        }
    }
}

/// One event's answers to a [`Program`]'s comparisons: two bits per comparison (known,
/// value), allocated on the first comparison asked.
#[derive(Debug, Default)]
pub struct Memo {
    words: Vec<u64>,
    len: usize,
}

impl Memo {
    pub fn new(program: &Program) -> Self {
        Memo {
            words: Vec::new(),
            len: program.len(),
        }
    }

    fn get(&self, n: usize) -> Option<bool> {
        let w = *self.words.get(2 * (n / 64))?;
        let bit = 1u64 << (n % 64);
        (w & bit != 0).then(|| self.words[2 * (n / 64) + 1] & bit != 0)
    }

    fn set(&mut self, n: usize, hit: bool) {
        if self.words.is_empty() {
            self.words = vec![0; 2 * self.len.div_ceil(64)];
        }
        let bit = 1u64 << (n % 64);
        if let Some(w) = self.words.get_mut(2 * (n / 64)) {
            *w |= bit;
        }
        if let (true, Some(w)) = (hit, self.words.get_mut(2 * (n / 64) + 1)) {
            *w |= bit;
        }
    }
}
