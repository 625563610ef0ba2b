// A JVM "app" that embeds the SDK the way an Android app does (FeedScreen in Main.kt).
// scripts/test-kotlin.sh compiles and runs it with kotlinc; with Gradle: `gradle :sample:run`.
plugins {
    kotlin("jvm") version "2.1.0"
    application
}

dependencies {
    implementation("net.java.dev.jna:jna:5.15.0")
}

sourceSets["main"].kotlin.srcDirs("src/main/kotlin", "../src/main/kotlin", "../build/generated/uniffi")

application {
    mainClass.set("dev.slowfast.sample.MainKt")
    applicationDefaultJvmArgs = listOf("-Djna.library.path=${rootDir.resolve("../target/debug").path}")
}
