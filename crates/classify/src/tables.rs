//! Names of the tables a query reads, from its tokens.
//!
//! Table references only appear in `FROM` lists and after `JOIN`, at any depth. The walk keeps, per
//! parenthesis depth, whether it is inside a `FROM` list (where a `,` introduces another table), and takes
//! the name right after `FROM`, `JOIN`, `STRAIGHT_JOIN` or such a `,`. Derived tables are walked as
//! ordinary subqueries. It errs on the side of listing too much (a CTE name, `x` in
//! `SUBSTRING(s FROM x)`): the proxy uses the list to keep reads of temporary tables on the master, where
//! an extra name is harmless and a missing one is not.

use std::collections::HashSet;

use sqlparser::tokenizer::Token;

use crate::tok::{is_call, is_kw, kw_in, qualified_name, starts_query};

/// Keywords that end a `FROM` list at their depth. (`FOR` does not: `USE INDEX FOR JOIN (i), t2`.)
const END_OF_FROM: &[&str] = &[
    "WHERE",
    "GROUP",
    "HAVING",
    "ORDER",
    "LIMIT",
    "WINDOW",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "INTO",
    "PROCEDURE",
    "SELECT",
];

/// Collects the lower-cased, unqualified, de-duplicated table names of a query.
pub(crate) fn collect(toks: &[Token]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut in_from = vec![false]; // per parenthesis depth
    let mut expect_table = false;
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        let depth_in_from = in_from.last().copied().unwrap_or(false);
        match t {
            Token::LParen => {
                // `FROM (t1 JOIN t2)`: a nested join list; `FROM (SELECT …)`: a derived table.
                let nested = expect_table && !starts_query(toks.get(i + 1));
                in_from.push(nested);
                expect_table = nested;
            }
            Token::RParen => {
                if in_from.len() > 1 {
                    in_from.pop();
                }
                expect_table = false;
            }
            Token::Comma => expect_table = depth_in_from,
            Token::Word(_) if expect_table => {
                expect_table = false;
                if is_kw(Some(t), "LATERAL") {
                    expect_table = true;
                } else if !is_call(toks, i) {
                    if let Some((name, len)) = qualified_name(toks, i) {
                        if name != "dual" && seen.insert(name.clone()) {
                            out.push(name);
                        }
                        i += len;
                        continue;
                    }
                }
            }
            Token::Word(_) => expect_table = keyword_effect(toks, i, &mut in_from),
            _ => expect_table = false,
        }
        i += 1;
    }
    out
}

/// Updates the `FROM`-list state for the keyword at `i`; returns whether a table name comes next.
fn keyword_effect(toks: &[Token], i: usize, in_from: &mut [bool]) -> bool {
    let t = toks.get(i);
    let Some(current) = in_from.last_mut() else {
        return false;
    };
    if is_kw(t, "FROM") {
        *current = true;
        return true;
    }
    let after_for = i > 0 && is_kw(toks.get(i - 1), "FOR"); // `USE INDEX FOR JOIN (…)`
    if (is_kw(t, "JOIN") && !after_for) || (is_kw(t, "STRAIGHT_JOIN") && *current) {
        return true;
    }
    if kw_in(t, END_OF_FROM) {
        *current = false;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(sql: &str) -> Vec<String> {
        collect(&crate::tok::tokenize(sql).unwrap_or_default())
    }

    #[test]
    fn from_lists_and_joins() {
        assert_eq!(tables("SELECT 1 FROM a, db.B AS x JOIN c ON 1, `D` WHERE 1"), ["a", "b", "c", "d"]);
        assert_eq!(tables("SELECT * FROM (t1, t2) JOIN (t3 LEFT JOIN t4 ON 1) ON 1"), ["t1", "t2", "t3", "t4"]);
        assert_eq!(tables("SELECT * FROM t WHERE x IN (SELECT y FROM u) ORDER BY a, b"), ["t", "u"]);
        assert_eq!(tables("SELECT * FROM (SELECT * FROM t) d, u"), ["t", "u"]);
        assert_eq!(tables("SELECT 1 FROM DUAL"), Vec::<String>::new());
        assert_eq!(tables("SELECT * FROM t USE INDEX FOR JOIN (i), u"), ["t", "u"]);
        assert_eq!(tables("SELECT * FROM a JOIN LATERAL (SELECT 1 FROM b) x"), ["a", "b"]);
        assert_eq!(tables("SELECT STRAIGHT_JOIN a FROM t1 STRAIGHT_JOIN t2"), ["t1", "t2"]);
    }
}
