
mod toy_client;
