"""The edge of the GraphQL schema: the rules every request's document, operation and input are held
to before a resolver runs (`rules.EdgeRules`), and the errors a client sees."""
