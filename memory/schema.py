"""The ledger database's schema: numbered migrations, applied in order on open.

SQLite tracks the version in ``PRAGMA user_version`` (:mod:`memory.db`); PostgreSQL in a
``schema_version`` table (:mod:`memory.pg`), with its own DDL for migrations 1-4
(:mod:`memory.schema_pg`). Append a migration here, never edit one that has shipped: a newer
VOLT upgrades an older database in place and nothing is lost.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: ledger, message log, weights
    """
    CREATE TABLE portfolios (
        id TEXT PRIMARY KEY,
        starting_cash REAL NOT NULL,
        cash REAL NOT NULL,
        peak_equity REAL NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    CREATE TABLE positions (
        portfolio TEXT NOT NULL REFERENCES portfolios(id),
        symbol TEXT NOT NULL,
        qty REAL NOT NULL,
        avg_cost REAL NOT NULL,
        PRIMARY KEY (portfolio, symbol)
    );
    CREATE TABLE orders (
        order_id TEXT PRIMARY KEY,          -- portfolio:as_of:symbol, the idempotency key
        portfolio TEXT NOT NULL,
        as_of TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        qty_requested REAL NOT NULL,
        status TEXT NOT NULL,               -- FILLED or UNFILLED
        reason TEXT,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    CREATE TABLE fills (
        order_id TEXT PRIMARY KEY REFERENCES orders(order_id),
        portfolio TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        qty REAL NOT NULL,
        reference_price REAL NOT NULL,
        price REAL NOT NULL,
        slippage_pct REAL NOT NULL,
        fee REAL NOT NULL,
        realized_pnl REAL NOT NULL,
        fill_date TEXT NOT NULL,
        latency_ms REAL NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    CREATE INDEX fills_by_symbol ON fills(portfolio, symbol, fill_date);
    CREATE TABLE cycles (
        portfolio TEXT NOT NULL,
        as_of TEXT NOT NULL,
        equity REAL NOT NULL,
        cash REAL NOT NULL,
        reward REAL NOT NULL,
        completed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        PRIMARY KEY (portfolio, as_of)
    );
    CREATE TABLE agent_messages (
        message_id TEXT PRIMARY KEY,
        cycle_id TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        from_agent TEXT NOT NULL,
        to_agent TEXT NOT NULL,
        message_type TEXT NOT NULL,
        priority TEXT NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX agent_messages_by_cycle ON agent_messages(cycle_id);
    CREATE TABLE agent_weights (
        agent TEXT PRIMARY KEY,
        weight REAL NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    """,
    # 2: learning store (predictions and their outcomes, trades, errors, parameter
    # changes, consensus records, versioned agent profiles, weight history)
    """
    CREATE TABLE agent_predictions (
        prediction_id TEXT PRIMARY KEY,      -- cycle_id:agent:symbol
        portfolio TEXT NOT NULL,
        cycle_id TEXT NOT NULL,
        agent TEXT NOT NULL,
        source TEXT NOT NULL,                -- model, prior, limits, ledger, rule
        model TEXT,
        profile_version INTEGER NOT NULL DEFAULT 0,
        prompt_version TEXT,
        symbol TEXT NOT NULL,
        as_of TEXT NOT NULL,
        action TEXT NOT NULL,                -- BUY/SELL/HOLD, a direction, or a verdict
        confidence REAL NOT NULL,
        signal REAL NOT NULL,                -- -1..1: the direction it bets on, times conviction
        features TEXT NOT NULL,              -- JSON situation features at as_of
        horizon INTEGER NOT NULL,
        filled_qty REAL NOT NULL DEFAULT 0,
        fill_price REAL,
        resolved INTEGER NOT NULL DEFAULT 0,
        resolved_as_of TEXT,
        entry_price REAL,
        exit_price REAL,
        realized_return REAL,
        hit INTEGER,
        loss REAL,
        trade_pnl REAL,
        lesson TEXT
    );
    CREATE INDEX predictions_pending ON agent_predictions(portfolio, resolved, as_of);
    CREATE INDEX predictions_by_agent ON agent_predictions(portfolio, agent, resolved, as_of);
    CREATE TABLE trade_outcomes (
        trade_id TEXT PRIMARY KEY,
        portfolio TEXT NOT NULL,
        symbol TEXT NOT NULL,
        action TEXT NOT NULL,
        entry_price REAL NOT NULL,
        exit_price REAL NOT NULL,
        qty REAL NOT NULL,
        pnl REAL NOT NULL,
        duration_days INTEGER NOT NULL,
        opened TEXT NOT NULL,
        closed TEXT NOT NULL,
        market_condition TEXT NOT NULL,
        errors TEXT NOT NULL DEFAULT '[]'
    );
    CREATE TABLE agent_errors (
        error_id TEXT PRIMARY KEY,
        portfolio TEXT NOT NULL,
        cycle_id TEXT NOT NULL,
        timestamp TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        agent TEXT NOT NULL,
        symbol TEXT,
        model TEXT,
        category TEXT NOT NULL,
        message TEXT NOT NULL,
        recovery_action TEXT NOT NULL,
        resolved INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX agent_errors_by_agent ON agent_errors(portfolio, agent, category);
    CREATE TABLE parameter_changes (
        change_id INTEGER PRIMARY KEY AUTOINCREMENT,
        portfolio TEXT NOT NULL,
        agent TEXT NOT NULL,
        target TEXT NOT NULL,
        old_value TEXT NOT NULL,
        new_value TEXT NOT NULL,
        reason TEXT NOT NULL,
        as_of TEXT NOT NULL,
        accuracy_before REAL,
        evaluated INTEGER NOT NULL DEFAULT 0,
        rolled_back INTEGER NOT NULL DEFAULT 0,
        time TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    CREATE TABLE consensus_records (
        record_id TEXT PRIMARY KEY,          -- cycle_id:symbol:revision
        portfolio TEXT NOT NULL,
        as_of TEXT NOT NULL,
        symbol TEXT NOT NULL,
        proposal TEXT NOT NULL,
        votes TEXT NOT NULL,
        weights TEXT NOT NULL,
        result TEXT NOT NULL
    );
    CREATE TABLE agent_profiles (
        portfolio TEXT NOT NULL,
        agent TEXT NOT NULL,
        version INTEGER NOT NULL,
        model_chain TEXT NOT NULL,           -- JSON list
        confidence_threshold REAL NOT NULL,
        timeout_s REAL NOT NULL,
        prompt_version TEXT,
        reason TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        PRIMARY KEY (portfolio, agent, version)
    );
    CREATE TABLE agent_weights_v2 (
        portfolio TEXT NOT NULL,
        agent TEXT NOT NULL,
        weight REAL NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        PRIMARY KEY (portfolio, agent)
    );
    -- version 1 weights were global: every existing portfolio keeps them
    INSERT INTO agent_weights_v2(portfolio, agent, weight, version, updated_at)
        SELECT p.id, w.agent, w.weight, w.version, w.updated_at FROM agent_weights w CROSS JOIN portfolios p;
    DROP TABLE agent_weights;
    ALTER TABLE agent_weights_v2 RENAME TO agent_weights;
    CREATE TABLE weight_history (
        portfolio TEXT NOT NULL,
        agent TEXT NOT NULL,
        as_of TEXT NOT NULL,
        weight REAL NOT NULL,
        resolved_count INTEGER NOT NULL,
        PRIMARY KEY (portfolio, agent, as_of)
    );
    """,
    # 3: corporate actions applied to held positions (a split once per portfolio, symbol, ex_date)
    """
    CREATE TABLE corporate_actions (
        portfolio TEXT NOT NULL,
        symbol TEXT NOT NULL,
        ex_date TEXT NOT NULL,               -- YYYY-MM-DD, effective at that day's open
        ratio REAL NOT NULL,                 -- new shares per old share (2.0 = 2:1, 0.5 = 1:2)
        qty_before REAL NOT NULL,
        qty_after REAL NOT NULL,
        applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        PRIMARY KEY (portfolio, symbol, ex_date)
    );
    """,
    # 4: position plans (stop, target, horizon, thesis) with their timeline, and the
    # per-cycle state of the protections (drawdown halt, trading and market breakers)
    """
    CREATE TABLE position_plans (
        plan_id TEXT PRIMARY KEY,            -- portfolio:symbol:opened
        portfolio TEXT NOT NULL,
        symbol TEXT NOT NULL,
        opened TEXT NOT NULL,                -- YYYY-MM-DD, the entry fill day
        plan TEXT NOT NULL,                  -- JSON of tools.trading.plans.Plan
        status TEXT NOT NULL DEFAULT 'open', -- open or closed
        closed TEXT,                         -- YYYY-MM-DD of the exit fill
        exit_kind TEXT,                      -- stop, trailing, target, time, exit_review, ...
        exit_price REAL
    );
    CREATE UNIQUE INDEX one_open_plan ON position_plans(portfolio, symbol) WHERE status = 'open';
    CREATE TABLE position_events (
        plan_id TEXT NOT NULL,
        portfolio TEXT NOT NULL,
        symbol TEXT NOT NULL,
        as_of TEXT NOT NULL,                 -- the cycle's decision day
        kind TEXT NOT NULL,                  -- entry, add, review, tighten, exit
        detail TEXT NOT NULL,                -- JSON
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        PRIMARY KEY (plan_id, as_of, kind)
    );
    CREATE INDEX position_events_by_symbol ON position_events(portfolio, symbol, as_of);
    CREATE TABLE cycle_protections (
        portfolio TEXT NOT NULL,
        as_of TEXT NOT NULL,
        state TEXT NOT NULL,                 -- JSON of tools.trading.protections.evaluate
        orders INTEGER,                      -- orders tried this cycle (after execution)
        failed INTEGER,                      -- of which not filled for a non-limit reason
        PRIMARY KEY (portfolio, as_of)
    );
    """,
    # 5: the RL controller's action per cycle (tools/learning/rl): what it observed, what it
    # chose, and what the hard limits let through. From here on, migrations are written in
    # SQL that SQLite and PostgreSQL both accept (no strftime defaults, no AUTOINCREMENT;
    # DOUBLE PRECISION, not REAL, which is 4 bytes in PostgreSQL; INTEGER for counts and flags;
    # timestamps as TEXT given by the writer, e.g. memory.db.utc_stamp()).
    """
    CREATE TABLE rl_actions (
        portfolio TEXT NOT NULL,
        as_of TEXT NOT NULL,                 -- the cycle's decision day
        policy TEXT NOT NULL,                -- the policy's id (file name and hash), or 'none'
        observation TEXT NOT NULL,           -- JSON: feature name -> value
        action DOUBLE PRECISION NOT NULL,    -- the size multiplier the policy chose
        applied DOUBLE PRECISION NOT NULL,   -- the multiplier after the hard limits clipped it
        PRIMARY KEY (portfolio, as_of)
    );
    """,
]
