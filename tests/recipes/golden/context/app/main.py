print("hello from the golden context")
