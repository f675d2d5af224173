"""PortfolioManager: values the portfolio after the fills, computes the cycle's reward,
closes the cycle in the ledger and stores the cycle's agent messages for audit.

Valuation after the cycle marks each position on the fill day F (the day its orders filled,
:func:`tools.broker.fill_day_marks`): at its open on F when it trades on F, else at its last
close before F; never a bar after F (live: at today's latest price). Equity, and so
``peak_equity``, only ever comes from these marks. Reward = equity after this cycle - equity
after the previous one (the starting cash for the first cycle).
"""

from __future__ import annotations

import pandas as pd
from langgraph.runtime import Runtime

from graph.context import VoltContext
from graph.state import CycleState
from memory.ledger import Ledger
from memory.message_log import MessageLog, MessageType, Priority, message, stable_ids
from nodes.execution_agent import cycle_fill_day
from tools.broker import fill_day_marks
from tools.data_source import market_dataset
from tools.portfolio import value_account


def portfolio_manager(state: CycleState, runtime: Runtime[VoltContext]) -> dict:
    settings = runtime.context.settings
    portfolio, day = state["portfolio_id"], state["as_of"]
    dataset = market_dataset(settings)
    ledger = Ledger(settings.ledger_path)
    account = ledger.account(portfolio)
    as_of = pd.Timestamp(day)
    marks, mark_notes = fill_day_marks(dataset, account.held(), as_of,
                                       cycle_fill_day(dataset, as_of, settings.source != "replay"))
    after = value_account(account, marks).as_dict()
    if mark_notes:  # a bad price was never used; say which fallback was
        after["mark_notes"] = mark_notes
    previous = ledger.last_completed_cycle(portfolio, before=day)
    reference = previous["equity"] if previous else account.starting_cash
    reward = after["equity"] - reference
    after["reward"] = round(reward, 6)
    after["peak_equity"] = max(account.peak_equity, after["equity"])
    after["fees_paid"] = round(sum(f["fee"] for f in state.get("fills", [])), 6)
    after["realized_pnl"] = round(ledger.realized_pnl(portfolio), 6)
    ledger.complete_cycle(portfolio, day, after["equity"], after["cash"], reward)

    new = [message("portfolio_manager", "broadcast", MessageType.STATUS_UPDATE,
                   {"as_of": day, "equity": after["equity"], "cash": after["cash"], "reward": after["reward"]})]
    if state.get("fills"):
        new.append(message("portfolio_manager", "learning_agent", MessageType.FEEDBACK_EVENT,
                           {"trigger": "capital_change", "reward": after["reward"],
                            "transaction_cost": after["fees_paid"]}))
    errors = [message(e.get("agent", "data"), "learning_agent", MessageType.ERROR_REPORT, e, Priority.HIGH)
              for e in [*state.get("errors", []), *state.get("data_errors", [])]]
    # Ids from the cycle and the content: a crash after this write re-runs this node, which
    # makes its messages anew; stable ids keep the audit log exactly-once (INSERT OR IGNORE).
    earlier = state.get("agent_messages", [])
    stored = stable_ids(state["cycle_id"], [*earlier, *new, *errors])
    MessageLog(settings.ledger_path).write(state["cycle_id"], stored)
    own = stored[len(earlier):len(earlier) + len(new)]
    return {"portfolio_after": after, "reward": reward, "agent_messages": own}
