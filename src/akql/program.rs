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

/// A query as the matcher evaluates it: its tree, with comparisons by number.
#[derive(Debug)]
pub enum Bound {
    And(Box<Bound>, Box<Bound>),
    Or(Box<Bound>, Box<Bound>),
    Test(u32),
}

/// The distinct comparisons of a policy set's queries.
#[derive(Debug, Default)]
pub struct Program {
    tests: Vec<Test>,
    /// Per comparison: the slot of its JSON path (`None` for the event's own fields).
    slots: Vec<Option<Slot>>,
    numbers: FxHashMap<Test, u32>,
}

impl Program {
    /// Binds a query's tree, numbering comparisons not seen before. `paths` gets the query's
    /// JSON paths.
    pub fn bind(&mut self, node: &Node, paths: &mut ColumnPaths) -> Bound {
        match node {
            Node::And(a, b) => {
                Bound::And(Box::new(self.bind(a, paths)), Box::new(self.bind(b, paths)))
            }
            Node::Or(a, b) => {
                Bound::Or(Box::new(self.bind(a, paths)), Box::new(self.bind(b, paths)))
            }
            Node::Test(t) => {
                if let Some(&n) = self.numbers.get(t) {
                    return Bound::Test(n);
                }
                let n = self.tests.len() as u32;
                self.slots.push(match t {
                    Test::Json(_, path, _) => Some(paths.slot_of(path)),
                    _ => None,
                });
                self.tests.push(t.clone());
                self.numbers.insert(t.clone(), n);
                Bound::Test(n)
            }
        }
    }

    /// Number of distinct comparisons.
    pub fn len(&self) -> usize {
        self.tests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tests.is_empty()
    }

    /// Whether the event matches a bound query. `view` must be made on columns guided by the
    /// `paths` the query was bound with, and `memo` must be this event's.
    pub fn eval(&self, b: &Bound, view: &EventView<'_, '_>, memo: &mut Memo) -> bool {
        match b {
            Bound::And(x, y) => self.eval(x, view, memo) && self.eval(y, view, memo),
            Bound::Or(x, y) => self.eval(x, view, memo) || self.eval(y, view, memo),
            Bound::Test(n) => {
                let n = *n as usize;
                if let Some(known) = memo.get(n) {
                    return known;
                }
                let hit = self.test(n, view);
                memo.set(n, hit);
                hit
            }
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
