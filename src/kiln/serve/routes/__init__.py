"""The server's routes in three routers: OpenAI's API (`openai`), the playground's page and helpers
(`playground`), and what operators poll (`ops`). Each reaches the shared state through `state.Server`."""
