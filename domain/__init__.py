"""The pure model of ordersaga: orders, inventory allocation, the order saga and its orchestrator."""
