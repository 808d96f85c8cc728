//! The classifier's table of tricky forms, plus small tests of the other verdict fields.

use rwsplit_classify::{classify, Hint, Kind, Reason};

const READ: (Kind, Reason) = (Kind::Read, Reason::Read);
const SET: (Kind, Reason) = (Kind::SessionSet, Reason::SessionState);
const BEGIN: (Kind, Reason) = (Kind::Begin { read_only: false }, Reason::Transaction);
const BEGIN_RO: (Kind, Reason) = (Kind::Begin { read_only: true }, Reason::Transaction);
const END: (Kind, Reason) = (Kind::End, Reason::Transaction);
const PREVIOUS: (Kind, Reason) = (Kind::Previous, Reason::Previous);
const fn m(reason: Reason) -> (Kind, Reason) {
    (Kind::Master, reason)
}
const WRITE: (Kind, Reason) = m(Reason::Write);
const DDL: (Kind, Reason) = m(Reason::Ddl);
const TX: (Kind, Reason) = m(Reason::Transaction);
const LOCKING: (Kind, Reason) = m(Reason::LockingRead);
const INTO: (Kind, Reason) = m(Reason::SelectInto);
const SIDE: (Kind, Reason) = m(Reason::SideEffectFunction);
const STATE: (Kind, Reason) = m(Reason::SessionState);
const LOCK: (Kind, Reason) = m(Reason::LockTables);
const PARSE: (Kind, Reason) = m(Reason::ParseError);
const MULTI: (Kind, Reason) = m(Reason::MultiStatement);
const ADMIN: (Kind, Reason) = m(Reason::Admin);
const EMPTY: (Kind, Reason) = m(Reason::Empty);
const STORED: (Kind, Reason) = m(Reason::StoredFunction);
const KILL: (Kind, Reason) = m(Reason::Kill);

#[rustfmt::skip]
const TABLE: &[(&str, (Kind, Reason))] = &[
    // Plain reads.
    ("SELECT 1", READ),
    ("select * from t", READ),
    ("SELECT a, b FROM t1 JOIN t2 ON t1.id = t2.id WHERE t1.x > 5", READ),
    ("SELECT * FROM t1 LEFT JOIN t2 USING (id) NATURAL JOIN t3", READ),
    ("SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE u.b = 1)", READ),
    ("SELECT EXISTS (SELECT 1 FROM u)", READ),
    ("SELECT * FROM (SELECT a FROM t) AS d", READ),
    ("WITH c AS (SELECT a FROM t) SELECT * FROM c", READ),
    ("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 5) SELECT * FROM c", READ),
    ("SELECT a FROM t UNION SELECT a FROM u", READ),
    ("(SELECT a FROM t) UNION ALL (SELECT a FROM u) ORDER BY a LIMIT 5", READ),
    ("SELECT 1 FROM DUAL", READ),
    ("SELECT NOW(), COUNT(*), SLEEP(0), UUID(), RAND() FROM t", READ),
    ("SELECT SQL_NO_CACHE a FROM t LIMIT 10, 20", READ),
    ("SELECT a FROM t GROUP BY a HAVING COUNT(*) > 1 ORDER BY a DESC", READ),
    ("SELECT ROW_NUMBER() OVER (PARTITION BY a ORDER BY b) FROM t", READ),
    ("SELECT a FROM t WHERE b = ? AND c = ?", READ),
    ("SELECT SUBSTRING(a FROM 1 FOR 2) FROM t", READ),
    ("SELECT * FROM t FORCE INDEX (i) WHERE a = 1", READ),
    ("SELECT a FROM t USE INDEX FOR ORDER BY (i) ORDER BY a", READ),
    ("VALUES ROW(1, 2), ROW(3, 4)", READ),
    ("SELECT MASTER_POS_WAIT('log.000001', 4), MASTER_GTID_WAIT('0-1-1')", READ),
    ("SELECT @@version, @@session.sql_mode, @@GLOBAL.read_only", READ),
    ("SELECT DATABASE(), USER(), VERSION(), CURRENT_TIMESTAMP", READ),
    ("SELECT @v, @`w`", PARSE), // sqlparser rejects `@` + quoted name
    ("SELECT @v FROM t", READ),
    ("  select 1 ;  ", READ),
    ("SELECT a FROM t WHERE x = 'it''s'", READ),
    ("SELECT JSON_EXTRACT(doc, '$.a'), doc->>'$.b' FROM t", READ),
    // Writes.
    ("INSERT INTO t VALUES (1)", WRITE),
    ("insert into t select * from u", WRITE),
    ("INSERT INTO t (a) VALUES (1) ON DUPLICATE KEY UPDATE a = a + 1", WRITE),
    ("UPDATE t SET a = 1 WHERE b = 2", WRITE),
    ("DELETE FROM t WHERE a = 1", WRITE),
    ("REPLACE INTO t VALUES (1)", WRITE),
    ("LOAD DATA INFILE '/tmp/x' INTO TABLE t", WRITE),
    ("LOAD DATA LOCAL INFILE 'x.csv' INTO TABLE t FIELDS TERMINATED BY ','", WRITE),
    ("LOAD XML LOCAL INFILE 'x.xml' INTO TABLE t", WRITE),
    ("CALL p(1, @x)", WRITE),
    ("DO SLEEP(1)", WRITE),
    ("HANDLER t OPEN", WRITE),
    ("HANDLER t READ FIRST", WRITE),
    ("GRANT SELECT ON db.* TO 'u'@'%'", WRITE),
    ("REVOKE SELECT ON db.* FROM 'u'@'%'", WRITE),
    ("WITH c AS (SELECT 1) UPDATE t SET a = 1", WRITE),
    ("WITH c AS (SELECT 1) DELETE FROM t", WRITE),
    ("BEGIN NOT ATOMIC SELECT 1", WRITE),
    // DDL.
    ("CREATE TABLE t (a INT)", DDL),
    ("CREATE TEMPORARY TABLE t (a INT)", DDL),
    ("CREATE OR REPLACE TEMPORARY TABLE t AS SELECT 1", DDL),
    ("CREATE INDEX i ON t (a)", DDL),
    ("CREATE VIEW v AS SELECT * FROM t", DDL),
    ("CREATE SEQUENCE s", DDL),
    ("ALTER TABLE t ADD COLUMN b INT", DDL),
    ("DROP TABLE t", DDL),
    ("DROP TEMPORARY TABLE IF EXISTS t", DDL),
    ("TRUNCATE TABLE t", DDL),
    ("TRUNCATE t", DDL),
    ("RENAME TABLE a TO b", DDL),
    ("ANALYZE TABLE t", DDL),
    ("ANALYZE SELECT * FROM t", READ),
    ("OPTIMIZE TABLE t", DDL),
    ("REPAIR TABLE t", DDL),
    // Locking reads at every depth.
    ("SELECT * FROM t WHERE id = 1 FOR UPDATE", LOCKING),
    ("SELECT * FROM t FOR SHARE", LOCKING),
    ("SELECT * FROM t FOR UPDATE NOWAIT", LOCKING),
    ("SELECT * FROM t FOR UPDATE SKIP LOCKED", LOCKING),
    ("SELECT * FROM t FOR SHARE OF t SKIP LOCKED", LOCKING),
    ("SELECT * FROM t FOR UPDATE WAIT 5", LOCKING),
    ("SELECT * FROM t LOCK IN SHARE MODE", LOCKING),
    ("select * from t lock in share mode", LOCKING),
    ("SELECT * FROM t WHERE a IN (SELECT a FROM u FOR UPDATE)", LOCKING),
    ("SELECT * FROM (SELECT * FROM u LOCK IN SHARE MODE) x", LOCKING),
    ("(SELECT a FROM t FOR UPDATE) UNION SELECT a FROM u", LOCKING),
    ("SELECT a FROM t UNION (SELECT a FROM u FOR SHARE)", LOCKING),
    ("WITH c AS (SELECT a FROM t FOR UPDATE) SELECT * FROM c", LOCKING),
    ("EXPLAIN SELECT * FROM t FOR UPDATE", LOCKING),
    // SELECT ... INTO.
    ("SELECT a INTO @v FROM t", INTO),
    ("SELECT a FROM t INTO @v", INTO),
    ("SELECT a, b FROM t WHERE id = 1 INTO @x, @y", INTO),
    ("SELECT * FROM t INTO OUTFILE '/tmp/x'", INTO),
    ("SELECT * INTO OUTFILE '/tmp/x' FIELDS TERMINATED BY ',' FROM t", INTO),
    ("SELECT a FROM t INTO DUMPFILE '/tmp/x'", INTO),
    ("SELECT a INTO @v FROM t FOR UPDATE", INTO),
    ("WITH c AS (SELECT 1 AS a) SELECT a FROM c INTO @v", INTO),
    // Side-effect and session-result functions.
    ("SELECT GET_LOCK('x', 1)", SIDE),
    ("SELECT RELEASE_LOCK('x')", SIDE),
    ("SELECT RELEASE_ALL_LOCKS()", SIDE),
    ("SELECT IS_USED_LOCK('x')", SIDE),
    ("SELECT IS_FREE_LOCK('x')", SIDE),
    ("SELECT LAST_INSERT_ID()", SIDE),
    ("select last_insert_id()", SIDE),
    ("SELECT * FROM t WHERE id = LAST_INSERT_ID()", SIDE),
    ("SELECT * FROM t WHERE id IN (SELECT LAST_INSERT_ID())", SIDE),
    ("SELECT FOUND_ROWS()", PREVIOUS),
    ("SELECT ROW_COUNT()", PREVIOUS),
    ("SELECT @@last_gtid", SIDE),
    ("SELECT @@session.last_gtid, 1", SIDE),
    ("SELECT NEXTVAL(s)", SIDE),
    ("SELECT LASTVAL(s)", SIDE),
    ("SELECT SETVAL(s, 10)", SIDE),
    ("SELECT CONNECTION_ID()", SIDE),
    ("SELECT LOAD_FILE('/etc/hosts')", SIDE),
    ("SELECT NEXT VALUE FOR s", SIDE),
    ("SELECT PREVIOUS VALUE FOR s", SIDE),
    ("SELECT s.nextval", SIDE),
    ("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 10", SIDE),
    ("SELECT @@identity", SIDE),
    ("SELECT @@last_insert_id", SIDE),
    ("SELECT @@insert_id", SIDE),
    ("SELECT @@session.last_insert_id", SIDE),
    ("SELECT @v := 1", SIDE),
    ("SELECT @v := @v + 1 FROM t", SIDE),
    ("SELECT a FROM t WHERE (@x := a) > 0", SIDE),
    ("SELECT mydb.myfunc(1)", STORED),
    ("SELECT my_func(1)", STORED),
    ("SELECT a FROM t WHERE b = f(a)", STORED),
    ("SELECT `user`()", STORED),
    ("SELECT now ()", STORED),
    ("SELECT count /* x */ (*) FROM t", STORED),
    ("SELECT NOW(), user (), COUNT(*) FROM t", READ),
    ("SELECT COUNT(*), concat(a, b), json_extract(c, '$.x') FROM t", READ),
    ("WITH c(n) AS (SELECT 1) SELECT n FROM c", READ),
    ("SELECT * FROM t FORCE INDEX (i) WHERE a IN (1, 2)", READ),
    // Previous-backend statements.
    ("SELECT @@warning_count", PREVIOUS),
    ("SELECT @@error_count", PREVIOUS),
    ("SELECT @@session.warning_count, @@error_count", PREVIOUS),
    ("SHOW WARNINGS", PREVIOUS),
    ("SHOW WARNINGS LIMIT 10", PREVIOUS),
    ("SHOW ERRORS", PREVIOUS),
    ("SHOW COUNT(*) WARNINGS", PREVIOUS),
    ("SHOW COUNT(*) ERRORS", PREVIOUS),
    ("SHOW PROFILE", PREVIOUS),
    ("SHOW PROFILE CPU FOR QUERY 2", PREVIOUS),
    ("SHOW PROFILES", PREVIOUS),
    ("GET DIAGNOSTICS @n = NUMBER", PREVIOUS),
    // SET: replayable session state.
    ("SET @a = 1", SET),
    ("SET @a := 1", SET),
    ("SET sql_mode = 'STRICT_TRANS_TABLES'", SET),
    ("SET SESSION sql_mode = ''", SET),
    ("SET LOCAL net_read_timeout = 60", SET),
    ("SET @@session.wait_timeout = 100", SET),
    ("SET @@local.wait_timeout = 100", SET),
    ("SET @@wait_timeout = 100", SET),
    ("SET autocommit = 0", SET),
    ("SET AUTOCOMMIT=1", SET),
    ("set autocommit = ON", SET),
    ("SET NAMES utf8mb4", SET),
    ("SET NAMES 'utf8mb4' COLLATE 'utf8mb4_bin'", SET),
    ("SET CHARACTER SET utf8", SET),
    ("SET CHARSET utf8", SET),
    ("SET ROLE ALL", SET),
    ("SET ROLE r1", SET),
    ("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", SET),
    ("SET @@session.transaction_isolation = 'READ-COMMITTED'", SET),
    ("SET sql_mode = CONCAT(@@sql_mode, ',NO_ZERO_DATE')", SET),
    ("SET @OLD_CS = @@character_set_client", STATE),
    ("SET @h = @@hostname", STATE),
    ("SET insert_id = 5", STATE),
    ("SET @@session.rand_seed1 = 5", STATE),
    ("SET time_zone = '+00:00'", SET),
    ("SET a = 1, @b = 'x', SESSION c = DEFAULT, @@session.d = 2, LOCAL e = 3, autocommit = 0", SET),
    ("SET @a = @b + 1", SET),
    ("SET @a = 'NOW()'", SET),
    ("SET @a = CONCAT('x', LOWER('Y'))", SET),
    ("SET sql_mode = REPLACE(@@sql_mode, 'ONLY_FULL_GROUP_BY', '')", SET),
    ("SET @d = CAST('1.5' AS DECIMAL(10, 2))", SET),
    ("SET @'quoted' = IFNULL(@x, 0)", SET),
    // SET: not replayable.
    ("SET GLOBAL max_connections = 100", WRITE),
    ("SET @@global.max_connections = 100", WRITE),
    ("SET PERSIST max_connections = 100", WRITE),
    ("SET PERSIST_ONLY max_connections = 100", WRITE),
    ("SET @@persist.max_connections = 100", WRITE),
    ("SET a = 1, GLOBAL b = 2", WRITE),
    ("SET GLOBAL TRANSACTION ISOLATION LEVEL SERIALIZABLE", WRITE),
    ("SET PASSWORD = 'x'", WRITE),
    ("SET PASSWORD FOR 'u'@'h' = 'x'", WRITE),
    ("SET DEFAULT ROLE ALL TO u", WRITE),
    ("SET TRANSACTION ISOLATION LEVEL READ COMMITTED", TX),
    ("SET TRANSACTION READ ONLY", TX),
    ("SET @@transaction_isolation = 'READ-COMMITTED'", TX),
    ("SET @@tx_read_only = 1", TX),
    ("SET @@transaction_isolation = 'READ-COMMITTED', @a = 1", STATE),
    ("SET @a = (SELECT MAX(id) FROM t)", STATE),
    ("SET @a = NOW()", STATE),
    ("SET @t = CURRENT_TIMESTAMP", STATE),
    ("SET @r = RAND()", STATE),
    ("SET @u = UUID()", STATE),
    ("SET @id = LAST_INSERT_ID()", STATE),
    ("SET @n = NEXT VALUE FOR s", STATE),
    ("SET @n = NEXTVAL(s)", STATE),
    ("SET @l = GET_LOCK('x', 1)", STATE),
    ("SET timestamp = UNIX_TIMESTAMP()", STATE),
    ("SET @v = mydb.f(1)", STATE),
    ("SET @v = my_stored_function(1)", STATE),
    ("SET @v = SYSDATE(), @w = 1", STATE),
    ("SET @g = @@global.gtid_executed", STATE),
    ("SET STATEMENT max_statement_time = 1 FOR SELECT * FROM t", WRITE),
    ("SET STATEMENT sql_mode = '' FOR UPDATE t SET a = 1", WRITE),
    ("SET STATEMENT x = 1 FOR SELECT * FROM t FOR UPDATE", LOCKING),
    ("SET STATEMENT x = 1 FOR CREATE TABLE t (a INT)", DDL),
    ("SET", PARSE),
    ("SET x", PARSE),
    ("SET @a", PARSE),
    ("SET SESSION @a = 1", PARSE),
    // USE and text-protocol prepared statements.
    ("USE db", SET),
    ("USE `my db`", SET),
    ("USE", PARSE),
    ("PREPARE s FROM 'SELECT 1'", STATE),
    ("EXECUTE s USING @a", STATE),
    ("DEALLOCATE PREPARE s", STATE),
    ("DROP PREPARE s", STATE),
    // Transactions.
    ("BEGIN", BEGIN),
    ("BEGIN WORK", BEGIN),
    ("START TRANSACTION", BEGIN),
    ("START TRANSACTION READ WRITE", BEGIN),
    ("START TRANSACTION WITH CONSISTENT SNAPSHOT", BEGIN),
    ("START TRANSACTION READ ONLY", BEGIN_RO),
    ("start transaction read only", BEGIN_RO),
    ("START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT", BEGIN_RO),
    ("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY", BEGIN_RO),
    ("START TRANSACTION READ ONLY, READ WRITE", BEGIN),
    ("START TRANSACTION FOO", PARSE),
    ("COMMIT", END),
    ("COMMIT WORK", END),
    ("COMMIT AND NO CHAIN NO RELEASE", END),
    ("ROLLBACK", END),
    ("ROLLBACK WORK", END),
    ("ROLLBACK AND CHAIN", END),
    ("ROLLBACK TO SAVEPOINT s", TX),
    ("ROLLBACK WORK TO s", TX),
    ("SAVEPOINT s", TX),
    ("RELEASE SAVEPOINT s", TX),
    ("XA START 'x'", BEGIN),
    ("XA BEGIN 'x'", BEGIN),
    ("XA END 'x'", TX),
    ("XA PREPARE 'x'", TX),
    ("XA COMMIT 'x'", TX),
    ("XA ROLLBACK 'x'", TX),
    ("XA RECOVER", TX),
    // Table locks.
    ("LOCK TABLES t READ", LOCK),
    ("LOCK TABLE t WRITE, u READ", LOCK),
    ("UNLOCK TABLES", LOCK),
    ("FLUSH TABLES WITH READ LOCK", LOCK),
    ("FLUSH TABLES t WITH READ LOCK", LOCK),
    ("FLUSH TABLES t FOR EXPORT", LOCK),
    // Admin.
    ("FLUSH LOGS", ADMIN),
    ("FLUSH PRIVILEGES", ADMIN),
    ("KILL 5", KILL),
    ("KILL QUERY 5", KILL),
    ("/* x */ KILL 5", KILL),
    ("SELECT 1; KILL 5", KILL),
    ("PREPARE s FROM 'KILL 5'", KILL),
    ("EXECUTE IMMEDIATE 'KILL 5'", KILL),
    ("EXECUTE IMMEDIATE 'SELECT 1'", STATE),
    ("PURGE BINARY LOGS TO 'x'", ADMIN),
    ("RESET MASTER", ADMIN),
    ("INSTALL PLUGIN x SONAME 'y.so'", ADMIN),
    ("UNINSTALL PLUGIN x", ADMIN),
    ("CHANGE MASTER TO MASTER_HOST = 'x'", ADMIN),
    ("STOP SLAVE", ADMIN),
    ("START SLAVE", ADMIN),
    ("START REPLICA", ADMIN),
    ("CHECK TABLE t", ADMIN),
    ("SHOW MASTER STATUS", ADMIN),
    ("SHOW MASTER LOGS", ADMIN),
    ("SHOW BINLOG EVENTS", ADMIN),
    ("SHOW BINARY LOGS", ADMIN),
    ("SHOW SLAVE STATUS", ADMIN),
    ("SHOW REPLICA STATUS", ADMIN),
    ("SHOW SLAVE HOSTS", ADMIN),
    ("SHOW REPLICAS", ADMIN),
    ("SHOW ALL SLAVES STATUS", ADMIN),
    ("SHOW PROCESSLIST", ADMIN),
    ("SHOW FULL PROCESSLIST", ADMIN),
    ("SHOW ENGINE INNODB STATUS", ADMIN),
    ("SHOW GRANTS", ADMIN),
    ("SHOW GRANTS FOR CURRENT_USER()", ADMIN),
    // Other SHOW forms read.
    ("SHOW TABLES", READ),
    ("SHOW FULL TABLES FROM db LIKE 'x%'", READ),
    ("SHOW DATABASES", READ),
    ("SHOW COLUMNS FROM t", READ),
    ("SHOW FULL COLUMNS FROM t FROM db", READ),
    ("SHOW CREATE TABLE t", READ),
    ("SHOW INDEX FROM t", READ),
    ("SHOW VARIABLES LIKE 'x'", READ),
    ("SHOW SESSION VARIABLES", READ),
    ("SHOW GLOBAL STATUS", READ),
    ("SHOW STATUS", READ),
    ("SHOW TABLE STATUS", READ),
    ("SHOW COLLATION", READ),
    ("SHOW CHARACTER SET", READ),
    ("SHOW ENGINES", READ),
    ("SHOW CREATE DATABASE db", READ),
    ("SHOW TRIGGERS", READ),
    ("SHOW PROCEDURE STATUS", READ),
    ("SHOW", PARSE),
    // DESCRIBE / EXPLAIN.
    ("DESCRIBE t", READ),
    ("DESC t", READ),
    ("DESC db.t col", READ),
    ("EXPLAIN t", READ),
    ("DESCRIBE", PARSE),
    ("EXPLAIN SELECT * FROM t WHERE a = 1", READ),
    ("EXPLAIN FORMAT=JSON SELECT 1", READ),
    ("EXPLAIN EXTENDED SELECT 1", READ),
    ("DESCRIBE SELECT 1", READ),
    ("EXPLAIN UPDATE t SET a = 1", WRITE),
    ("EXPLAIN DELETE FROM t", WRITE),
    ("EXPLAIN INSERT INTO t VALUES (1)", WRITE),
    ("EXPLAIN ANALYZE SELECT * FROM t", ADMIN),
    ("EXPLAIN FOR CONNECTION 5", ADMIN),
    // Routing hints never change the verdict.
    ("/* rwsplit:replica */ SELECT 1", READ),
    ("SELECT 1 -- rwsplit:master", READ),
    ("# rwsplit:master\nSELECT 1", READ),
    ("UPDATE t SET a = 1 /* rwsplit:replica */", WRITE),
    // Keywords in strings, quoted identifiers and comments don't count.
    ("SELECT 'for update' FROM t", READ),
    ("SELECT `into` FROM t", READ),
    ("SELECT 'get_lock(1)'", READ),
    ("SELECT * FROM t WHERE a = 'x FOR UPDATE'", READ),
    ("SELECT \"LOCK IN SHARE MODE\"", READ),
    ("SELECT `for`, `update` FROM t", READ),
    ("SELECT 'a /* c */ b', '-- x', '# y' FROM t", READ),
    ("SELECT '@v := 1', 'NEXT VALUE FOR s', '@@identity'", READ),
    ("SELECT `last_insert_id` FROM t", READ),
    ("SELECT a FROM t /* FOR UPDATE */", READ),
    ("SELECT a FROM t -- INTO @v", READ),
    ("SELECT 'it\\'s FOR UPDATE'", READ),
    ("SELECT 1 -- ; DELETE FROM t", READ),
    ("SELECT ';' FROM t", READ),
    ("SELECT 1--1", READ),
    // Executable comments (mariadb-dump / mysqldump) are code.
    ("/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */", STATE),
    ("/*!40103 SET TIME_ZONE='+00:00' */", SET),
    ("/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */", STATE),
    ("/*!40101 SET SQL_MODE=@OLD_SQL_MODE */", SET),
    ("/*M!100616 SET @OLD_NOTE_VERBOSITY=@@NOTE_VERBOSITY, NOTE_VERBOSITY=0 */", STATE),
    ("SELECT /*!40001 SQL_NO_CACHE */ * FROM `t`", READ),
    ("START TRANSACTION /*!40100 WITH CONSISTENT SNAPSHOT */", BEGIN),
    ("/*!50001 CREATE ALGORITHM=UNDEFINED VIEW `v` AS SELECT 1 */", DDL),
    ("/*!40000 ALTER TABLE `t` DISABLE KEYS */", DDL),
    ("SELECT 1 FROM t /*!50000 FOR UPDATE */", LOCKING),
    ("/*!40101 SET NAMES utf8mb4 */", SET),
    // Multi-statements.
    ("SELECT 1; SELECT 2", READ),
    ("SELECT * FROM t; SELECT * FROM u;", READ),
    ("SELECT 1; UPDATE t SET a = 1", WRITE),
    ("UPDATE t SET a = 1; SELECT 1", WRITE),
    ("SELECT 1; SET @a = 1", MULTI),
    ("SET NAMES utf8; SELECT 1", MULTI),
    ("SELECT 1; SHOW WARNINGS", MULTI),
    ("SELECT 1; BEGIN", TX),
    ("SELECT 1; SELECT * FROM t FOR UPDATE", LOCKING),
    ("SELECT 1;; SELECT 2", PARSE),
    ("SELECT 1; SELEC 2", PARSE),
    // Empty text.
    ("", EMPTY),
    ("   \n\t", EMPTY),
    ("/* only a comment */", EMPTY),
    ("-- just this", EMPTY),
    ("#x", EMPTY),
    (";", EMPTY),
    (" ; ; ", EMPTY),
    // Garbage and forms sqlparser does not parse.
    ("SELEC 1", PARSE),
    ("SELECT FROM WHERE", PARSE),
    ("SELECT * FROM t WHERE", PARSE),
    ("SELECT 'abc", PARSE),
    ("SELECT 1 /* unterminated", PARSE),
    ("/*!40101 SET a = 1", PARSE),
    ("FOO BAR", PARSE),
    ("123", PARSE),
    ("TABLE t", PARSE),
    ("SELECT * FROM t FOR SYSTEM_TIME AS OF TIMESTAMP '2020-01-01'", PARSE),
];

#[test]
fn table() {
    let mut failures = Vec::new();
    for (sql, (kind, reason)) in TABLE {
        let v = classify(sql);
        if (v.kind, v.reason) != (*kind, *reason) {
            failures.push(format!("{sql:?}: got {:?}/{:?}, want {kind:?}/{reason:?}", v.kind, v.reason));
        }
    }
    assert!(failures.is_empty(), "{} of {} rows failed:\n{}", failures.len(), TABLE.len(), failures.join("\n"));
}

/// The shape cache must give exactly the direct verdict for every row, both on a miss and on a hit, and for
/// a variant of the row with different literal values (which shares its shape).
#[test]
fn cached_verdicts_equal_direct_ones() {
    let vary = |sql: &str| sql.replace('1', "7").replace("'a'", "'zz'").replace("'x'", "'for update'");
    for (sql, _) in TABLE {
        for text in [sql.to_string(), vary(sql)] {
            let direct = classify(&text);
            let cached = || rwsplit_classify::classify_cached(text.as_bytes(), Default::default());
            assert_eq!(*cached(), direct, "miss: {text:?}");
            assert_eq!(*cached(), direct, "hit: {text:?}");
        }
    }
}

#[test]
fn hints() {
    let cases: &[(&str, Option<Hint>)] = &[
        ("/* rwsplit:replica */ SELECT 1", Some(Hint::Replica)),
        ("SELECT 1 /* RWSPLIT:MASTER */", Some(Hint::Master)),
        ("SELECT 1 -- rwsplit:master", Some(Hint::Master)),
        ("SELECT 1 # please rwsplit:replica thanks", None),
        ("SELECT 1 # rwsplit:replica thanks", Some(Hint::Replica)),
        ("SELECT 1 /*+ rwsplit:replica */", Some(Hint::Replica)),
        ("SELECT 1; SELECT 2 /* rwsplit:master */", Some(Hint::Master)),
        ("SELECT 1", None),
        ("SELECT 'rwsplit:master'", None),
        ("SELECT `rwsplit:replica` FROM t", None),
        ("/*!40101 SET @a = 'rwsplit:master' */", None),
        ("SELECT 1 --rwsplit:master", None), // `--` without a space is not a comment
    ];
    for (sql, hint) in cases {
        assert_eq!(classify(sql).hint, *hint, "{sql}");
    }
    assert_eq!(classify("/* rwsplit:replica */ UPDATE t SET a = 1").kind, Kind::Master);
}

#[test]
fn tables() {
    let cases: &[(&str, &[&str])] = &[
        ("SELECT * FROM db.T1 JOIN `t2` ON 1", &["t1", "t2"]),
        ("SELECT * FROM t1, t2 WHERE t1.a IN (SELECT a FROM t3)", &["t1", "t2", "t3"]),
        ("SELECT * FROM t; SELECT * FROM u, t", &["t", "u"]),
        ("WITH c AS (SELECT a FROM base) SELECT * FROM c", &["base", "c"]),
        ("SELECT 1", &[]),
        ("SELECT 1 FROM dual", &[]),
        ("DESCRIBE db.Tmp", &["tmp"]),
        ("SHOW COLUMNS FROM tmp", &["tmp"]),
        ("SHOW CREATE TABLE `Tmp`", &["tmp"]),
        ("EXPLAIN SELECT * FROM tmp", &["tmp"]),
    ];
    for (sql, tables) in cases {
        assert_eq!(classify(sql).tables, *tables, "{sql}");
    }
}

#[test]
fn temporary_tables() {
    let cases: &[(&str, Option<&str>)] = &[
        ("CREATE TEMPORARY TABLE IF NOT EXISTS db.Tmp (a INT)", Some("tmp")),
        ("CREATE OR REPLACE TEMPORARY TABLE `X` AS SELECT 1", Some("x")),
        ("create temporary table t2 like t1", Some("t2")),
        ("CREATE TEMPORARY TABLE a (x INT); CREATE TEMPORARY TABLE b (x INT)", Some("a")),
        ("CREATE TABLE t (a INT)", None),
        ("DROP TEMPORARY TABLE t", None),
        ("SELECT 1", None),
    ];
    for (sql, name) in cases {
        let v = classify(sql);
        assert_eq!(v.effects.temp_tables_created.first().map(String::as_str), *name, "{sql}");
        if name.is_some() {
            assert!(v.effects.session_change, "{sql}");
            assert_eq!(v.kind, Kind::Master, "{sql}");
        }
    }
    let drop = classify("DROP TEMPORARY TABLE IF EXISTS t, db.U");
    assert!(drop.effects.session_change && !drop.effects.implicit_commit);
    assert_eq!(drop.effects.tables_dropped, ["t", "u"]);
    let drop = classify("DROP TABLE t");
    assert!(drop.effects.implicit_commit && !drop.effects.session_change);
    assert_eq!(drop.effects.tables_dropped, ["t"]);
}

#[test]
fn user_variables() {
    // (sql, reads_user_vars, writes_user_vars)
    let cases: &[(&str, bool, bool)] = &[
        ("SELECT @a", true, false),
        ("SELECT * FROM t WHERE id = @id", true, false),
        ("SELECT @@sql_mode", false, false),
        ("SELECT @a := 1", false, true),
        ("SELECT @a := @a + 1", true, true),
        ("SELECT a INTO @v FROM t", false, true),
        ("SELECT a, b FROM t INTO @x, @y", false, true),
        ("SELECT a FROM t INTO OUTFILE '/tmp/x'", false, false),
        ("SET @a = 1", false, true),
        ("SET @a = @b", true, true),
        ("SET sql_mode = @old_mode", true, false),
        ("SET @old = @@sql_mode", false, true),
        ("SET @`quoted var` = 1", false, true),
        ("SET autocommit = 0", false, false),
        ("SELECT '@a'", false, false),
        ("SELECT 1; SET @a = 1", false, true),
        ("/*!40101 SET SQL_MODE=@OLD_SQL_MODE */", true, false),
        ("UPDATE t SET v = (@n := v + 10) WHERE id = 1", false, true),
        ("INSERT INTO t VALUES (@x := 5)", false, true),
        ("DO @d := 5", false, true),
        ("CALL p(@o)", true, true),
        ("CALL p(1)", false, false),
        ("UPDATE t SET a = @v", true, false),
    ];
    for (sql, reads, writes) in cases {
        let v = classify(sql);
        assert_eq!((v.reads_user_vars, v.effects.writes_user_vars), (*reads, *writes), "{sql}");
    }
}

#[test]
fn session_change() {
    let changes = [
        "SET @a = 1",
        "SET NAMES utf8mb4",
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "SET @a = NOW()",
        "USE db",
        "CREATE TEMPORARY TABLE t (a INT)",
        "PREPARE s FROM 'SELECT 1'",
        "DEALLOCATE PREPARE s",
        "LOCK TABLES t READ",
        "UNLOCK TABLES",
        "FLUSH TABLES WITH READ LOCK",
        "SELECT 1; SET @a = 1",
    ];
    for sql in changes {
        assert!(classify(sql).effects.session_change, "{sql}");
    }
    let no_change = [
        "SELECT 1",
        "UPDATE t SET a = 1",
        "SET GLOBAL x = 1",
        "SET TRANSACTION READ ONLY",
        "SET STATEMENT x = 1 FOR SELECT 1",
        "BEGIN",
        "CREATE TABLE t (a INT)",
    ];
    for sql in no_change {
        assert!(!classify(sql).effects.session_change, "{sql}");
    }
    let multi = classify("SELECT 1; SET @a = 1");
    assert_eq!((multi.kind, multi.reason), (Kind::Master, Reason::MultiStatement));
}

#[test]
fn statement_count() {
    let cases: &[(&str, usize)] = &[
        ("SELECT 1", 1),
        ("SELECT 1;", 1),
        ("SELECT 1 ; \n ", 1),
        ("SELECT ';'", 1),
        ("SELECT 1 /* ; */", 1),
        ("SELECT 1; SELECT 2", 2),
        ("SELECT 1; UPDATE t SET a = 1; SELECT 3;", 3),
        ("", 1),
        (";", 1),
    ];
    for (sql, n) in cases {
        assert_eq!(classify(sql).statements, *n, "{sql}");
    }
}

#[test]
fn labels() {
    let reasons = [
        (Reason::Read, "read"),
        (Reason::Write, "write"),
        (Reason::Ddl, "ddl"),
        (Reason::Transaction, "transaction"),
        (Reason::LockingRead, "locking_read"),
        (Reason::SelectInto, "select_into"),
        (Reason::SideEffectFunction, "side_effect_function"),
        (Reason::SessionState, "session_state"),
        (Reason::LockTables, "lock_tables"),
        (Reason::ParseError, "parse_error"),
        (Reason::MultiStatement, "multi_statement"),
        (Reason::Admin, "admin"),
        (Reason::Previous, "previous"),
        (Reason::Empty, "empty"),
        (Reason::StoredFunction, "stored_function"),
        (Reason::Kill, "kill"),
    ];
    for (reason, label) in reasons {
        assert_eq!(reason.as_str(), label);
    }
    assert_eq!(Hint::Master.as_str(), "master");
    assert_eq!(Hint::Replica.as_str(), "replica");
}

/// Malformed or hostile inputs that must all go to the master.
#[rustfmt::skip]
const HOSTILE: &[&str] = &[
    "'", "\"", "`", "/*", "/*!", "/*M!", "*/", "--", "#", ";", ";;;", "\\", "@", "@@", "@'", ":=",
    "SELECT '", "SELECT \"abc", "SELECT `a", "SELECT 1 /*", "SELECT /*!40101 1", "SET @a = '",
    "SELECT 'a\\", "SELECT 1 FROM t WHERE a = 'x' /* FOR UPDATE", "SÉLECT ñ FROM tablé",
    "\u{0}\u{1}\u{2}", "SELECT \u{0}", "\u{feff}SELECT 1", "SET", "SET STATEMENT", "SET STATEMENT FOR",
    "SHOW COUNT(", "EXPLAIN", "EXPLAIN FORMAT=", "CREATE TEMPORARY TABLE", "CREATE TEMPORARY TABLE db.",
    "START", "XA", "GET", "DESC db.", "USE `", "SELECT @`", "SELECT @@session.", "SELECT 1 INTO",
    "SELECT NEXT VALUE FOR", "LOCK IN SHARE", "(((", ")))", "SELECT ((((1", "WITH", "VALUES",
];

/// Hostile inputs: the classifier must not panic, and malformed text goes to the master.
#[test]
fn hostile_inputs_do_not_panic() {
    let long_chain = format!("SELECT 1{}", " + 1".repeat(100_000));
    let long_or = format!("SELECT * FROM t WHERE {}", vec!["a = 1"; 20_000].join(" OR "));
    let long_union = vec!["SELECT 1"; 20_000].join(" UNION ");
    let deep_parens = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
    let deep_open = "(".repeat(100_000);
    let garbage: String = (0u32..5_000).filter_map(|n| char::from_u32(n * 7919 % 0x11_0000)).collect();
    let lossy = String::from_utf8_lossy(&[0xff, b'S', 0xfe, b'\'', 0x00, b'/', b'*', 0xc3]).into_owned();
    let must_be_master: Vec<String> = HOSTILE
        .iter()
        .map(|s| s.to_string())
        .chain([long_chain, long_or, long_union, deep_parens, deep_open, garbage, lossy])
        .collect();
    // Long but valid reads: they may read, they must not panic.
    let many_tables: Vec<String> = (0..30_000).map(|n| format!("t{n}")).collect();
    let may_read = vec![
        format!("SELECT 1 FROM {}", many_tables.join(", ")),
        format!("SELECT {} FROM t", vec!["a"; 50_000].join(", ")),
        "SELECT * FROM t;".repeat(5_000),
        format!("SELECT 1{}", " + 1".repeat(1_500)),
        "SELECT '日本語' FROM 表".to_string(),
        "SELECT 🦀, $$".to_string(),
    ];
    // Run on a thread with a small stack, like a proxy worker, to catch deep recursion.
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            for sql in &must_be_master {
                let v = classify(sql);
                let head: String = sql.chars().take(60).collect();
                assert_eq!(v.kind, Kind::Master, "{head:?}");
                assert!(v.statements >= 1, "{head:?}");
            }
            for sql in &may_read {
                let v = classify(sql);
                let head: String = sql.chars().take(60).collect();
                assert_eq!((v.kind, v.reason), (Kind::Read, Reason::Read), "{head:?}");
            }
        })
        .expect("spawn test thread");
    assert!(handle.join().is_ok());
}

/// What statements do to session state, beyond their route.
#[test]
fn effects() {
    let e = |sql: &str| classify(sql).effects;
    assert!(e("CALL p()").stored_code);
    assert!(e("SELECT my_func()").stored_code);
    assert!(e("EXECUTE s").stored_code);
    assert!(e("INSERT INTO t VALUES (f(1))").stored_code);
    assert!(!e("INSERT INTO t (a, b) VALUES (1, CONCAT('a', 'b'))").stored_code);
    assert!(!e("UPDATE t SET a = 1 WHERE b IN (1, 2)").stored_code);
    assert!(!e("INSERT INTO db.t (v) VALUES ('x')").stored_code, "a qualified table with a column list");
    assert!(!e("INSERT INTO db.t (a) SELECT a FROM u").stored_code);
    assert!(!e("REPLACE db.t (a) VALUES (1)").stored_code);
    assert!(e("INSERT INTO t VALUES (db.f(1))").stored_code);
    assert!(e("SELECT GET_LOCK('x', 1)").named_locks);
    assert!(e("DO GET_LOCK('x', 1)").named_locks);
    assert_eq!(e("LOCK TABLES t READ").table_locks, Some(true));
    assert_eq!(e("UNLOCK TABLES").table_locks, Some(false));
    assert_eq!(e("BEGIN").table_locks, Some(false), "BEGIN releases table locks");
    assert_eq!(e("PREPARE S FROM 'SELECT 1'").prepares, ["s"]);
    assert_eq!(e("DEALLOCATE PREPARE s").deallocates, ["s"]);
    assert_eq!(e("DROP PREPARE s").deallocates, ["s"]);
    assert_eq!(e("HANDLER t OPEN").handler, Some(true));
    assert_eq!(e("HANDLER t CLOSE").handler, Some(false));
    assert_eq!(e("HANDLER t READ FIRST").handler, None);
    for sql in
        ["CREATE TABLE t (a INT)", "ALTER TABLE t ADD b INT", "BEGIN", "LOCK TABLES t READ", "GRANT ALL ON *.* TO u"]
    {
        assert!(e(sql).implicit_commit, "{sql}");
    }
    for sql in ["CREATE TEMPORARY TABLE t (a INT)", "DROP TEMPORARY TABLE t", "INSERT INTO t VALUES (1)", "SET @a = 1"]
    {
        assert!(!e(sql).implicit_commit, "{sql}");
    }
    for sql in [
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 1",
        "DELETE FROM t",
        "REPLACE t VALUES (1)",
        "LOAD DATA INFILE 'x' INTO TABLE t",
    ] {
        assert!(e(sql).dml, "{sql}");
    }
    assert!(!e("DO 1").dml && !e("CALL p()").dml);
    assert!(e("LOAD DATA LOCAL INFILE 'x' INTO TABLE t").local_infile);
    assert!(!e("LOAD DATA INFILE 'x' INTO TABLE t").local_infile);
    assert!(e("COMMIT RELEASE").releases_connection && !e("COMMIT NO RELEASE").releases_connection);
    assert!(e("FLUSH TABLES WITH READ LOCK").flush_locks && e("FLUSH TABLES t FOR EXPORT").flush_locks);
    assert!(!e("LOCK TABLES t READ").flush_locks && !e("FLUSH TABLES").flush_locks);
    assert_eq!(e("SET STATEMENT max_statement_time = 1 FOR SELECT 1").statement_scoped, ["max_statement_time"]);
    assert_eq!(classify("RENAME TABLE a TO b, c TO d").tables, ["a", "b", "c", "d"]);
}

/// What a SET assigns and what it reads (for keeping only the last value of a variable).
#[test]
fn set_assignments() {
    const CHARSET: &[&str] = &["character_set_connection", "collation_connection"];
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("SET @a = 1", &["@a"], &[]),
        ("SET @A = 'x'", &["@a"], CHARSET),
        ("SET @a = @a + 1", &["@a"], &["@a"]),
        ("SET @b = @`A` * 2", &["@b"], &["@a"]),
        ("SET SESSION time_zone = '+00:00'", &["time_zone"], &[]),
        ("SET @@session.sql_mode = CONCAT(@@sql_mode, ',X')", &["sql_mode"], &["sql_mode"]),
        ("SET autocommit = 1, @@local.wait_timeout = 5", &["autocommit", "wait_timeout"], &[]),
        (
            "SET NAMES utf8mb4",
            &["character_set_client", "character_set_connection", "character_set_results", "collation_connection"],
            &[],
        ),
        ("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", &["tx_isolation"], &[]),
        ("SET SESSION TRANSACTION READ ONLY", &["tx_read_only"], &[]),
        ("SET ROLE r", &[rwsplit_classify::ROLE_KEY], &[]),
        ("USE db", &[rwsplit_classify::SCHEMA_KEY], &[]),
    ];
    for (sql, assigns, reads) in cases {
        let v = classify(sql);
        assert_eq!(v.effects.assigns, *assigns, "{sql}");
        assert_eq!(v.effects.reads, *reads, "{sql}");
        assert_eq!(v.effects.order_dependent(), !reads.is_empty(), "{sql}");
    }
}

/// Statements that apply to the next statement or transaction only, and transaction endings.
#[test]
fn next_statement_and_transaction_endings() {
    let e = |sql: &str| classify(sql).effects;
    for sql in [
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET @@transaction_isolation = 'READ-COMMITTED'",
        "SET insert_id = 5",
        "SET rand_seed1 = 1, rand_seed2 = 2",
    ] {
        assert!(e(sql).next_statement, "{sql}");
    }
    assert!(!e("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE").next_statement);
    assert!(e("COMMIT AND CHAIN").chain && e("ROLLBACK WORK AND CHAIN NO RELEASE").chain);
    assert!(!e("COMMIT AND NO CHAIN").chain && !e("COMMIT").chain);
    // XA COMMIT may finish a prepared transaction of a connection that is gone: never a no-op End.
    assert_eq!(classify("XA COMMIT 'x'").kind, Kind::Master);
    assert_eq!(classify("XA ROLLBACK 'x'").kind, Kind::Master);
}

/// Calls whose state belongs to the master's connection or server.
#[test]
fn master_only_calls() {
    for sql in [
        "SELECT GET_LOCK('a', 0)",
        "SELECT IS_USED_LOCK('a')",
        "SELECT RELEASE_ALL_LOCKS()",
        "SELECT LAST_INSERT_ID()",
        "SELECT NEXT VALUE FOR s",
        "SELECT s.nextval",
        "SELECT LASTVAL(s)",
        "SELECT @@last_insert_id",
        "SELECT @@identity",
        "SELECT LOAD_FILE('/etc/hosts')",
    ] {
        let v = classify(sql);
        assert!(v.effects.master_only, "{sql}");
        assert_eq!(v.kind, Kind::Master, "{sql}");
    }
    for sql in ["SELECT @a := 1", "SELECT SQL_CALC_FOUND_ROWS * FROM t", "SELECT SLEEP(1)", "SELECT 1"] {
        assert!(!classify(sql).effects.master_only, "{sql}");
    }
}

/// MariaDB's ANALYZE runs the statement it analyzes; ANALYZE TABLE maintains tables.
#[test]
fn analyze() {
    assert_eq!(classify("ANALYZE SELECT * FROM t").kind, Kind::Read);
    assert_eq!(classify("ANALYZE FORMAT=JSON SELECT * FROM t").kind, Kind::Read);
    let v = classify("ANALYZE DELETE FROM t");
    assert!(v.kind == Kind::Master && v.effects.dml);
    let v = classify("ANALYZE TABLE t");
    assert!(v.kind == Kind::Master && v.effects.implicit_commit);
    assert!(classify("ANALYZE NO_WRITE_TO_BINLOG TABLE t").effects.implicit_commit);
    assert_eq!(classify("ANALYZE").reason, Reason::ParseError);
}

/// A versioned comment above the server's version is a comment, not code: its text cannot hide a write.
#[test]
fn versioned_comments_follow_the_server_version() {
    use rwsplit_classify::{classify_with, Dialect};
    let d = Dialect::for_server("10.11.6-MariaDB");
    let sql = b"SELECT 1 /*M!999999 '*/; DELETE FROM b WHERE id=12345; SELECT '*/";
    assert_eq!(classify_with(sql, d).kind, Kind::Master);
    let sql = b"SELECT 1 /*M!999999 x */; DELETE FROM b WHERE id = 1";
    let v = classify_with(sql, d);
    assert_eq!((v.kind, v.statements, v.effects.dml), (Kind::Master, 2, true));
    assert_eq!(classify_with(b"SELECT 1 /*!50100 FOR UPDATE */", d).reason, Reason::LockingRead);
    assert_eq!(classify_with(b"SELECT 1 /*M!999999 FOR UPDATE */", d).kind, Kind::Read);
}

/// The session's dialect changes how text is read; the classifier follows it.
#[test]
fn dialects() {
    use rwsplit_classify::lex::Multibyte;
    use rwsplit_classify::{classify_with, Dialect};
    let nbe = Dialect { no_backslash_escapes: true, ..Dialect::default() };
    // With backslash escapes the quote is escaped and `FOR UPDATE` is inside the string.
    assert_eq!(classify_with(br"SELECT 'a\' FOR UPDATE -- '", Dialect::default()).reason, Reason::Read);
    assert_eq!(classify_with(br"SELECT 'a\' FOR UPDATE -- '", nbe).reason, Reason::LockingRead);
    let sjis = Dialect { multibyte: Some(Multibyte::Sjis), ..Dialect::default() };
    let text = b"SELECT '\x95\x5c' FROM t FOR UPDATE";
    assert_eq!(classify_with(text, sjis).reason, Reason::LockingRead);
    let ansi = Dialect { ansi_quotes: true, ..Dialect::default() };
    assert_eq!(classify_with(b"SELECT * FROM \"Tmp\"", ansi).tables, ["tmp"]);
}
